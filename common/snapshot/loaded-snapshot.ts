/**
 * What a verified snapshot offers whoever serves it, whichever way it is held (memory-snapshot.ts, disk-snapshot.ts).
 *
 * Concurrency: a loaded snapshot is immutable: any number of lookups may run on it; `close` is called once, by the
 * owner, after the last lookup.
 */
import type { SnapshotHeader } from './format.js';

/** Where a version's partitions live while it is served: all in memory, or read from the file at lookup time. */
export type SnapshotMode = 'memory' | 'disk';

/** A verified snapshot, ready to answer lookups. */
export interface LoadedSnapshot {
  readonly header: SnapshotHeader;
  readonly mode: SnapshotMode;
  /** Bytes of the file this snapshot holds in memory. */
  readonly residentBytes: number;
  /** Rows this snapshot answers for: all of them, or on a shard replica its shard's (shard.ts). */
  readonly heldRows: number;
  /**
   * The JSON body for `id`, or undefined when the snapshot has no such id: at once in memory mode (and in disk mode
   * for an id in the hot-record cache, or ruled out by the slot tables in memory), else as a promise (at most two
   * positional reads). Throws once the snapshot is closed: a reader calls it in the same turn as it read the
   * live version (memory mode frees its bytes at `close`).
   */
  lookup(id: string): string | undefined | Promise<string | undefined>;
  /** Releases the snapshot (its memory at once) once lookups in progress are done; later lookups throw. */
  close(): Promise<void>;
}
