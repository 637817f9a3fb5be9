/**
 * The version this replica serves. A swap is one reference assignment, so a read sees either the old version
 * or the new one, whole, and never waits: loading happens elsewhere, before the swap.
 * `swap` returns the version it replaced, and its caller (the Syncer) releases it: a request that already read
 * `current` keeps using its value, so a memory-mode snapshot lives until its last reference goes, and a disk-mode
 * snapshot's `close` waits for the lookups in flight before it closes the file.
 *
 * Concurrency: one event loop; `swap` is called by the Syncer only, one load at a time; `current` by anyone.
 */
import type { SnapshotManifest } from '../common/protocol.js';
import type { LoadedSnapshot } from '../common/snapshot/loaded-snapshot.js';

/** A loaded version with what every answer needs precomputed. */
export interface LiveVersion {
  readonly snapshot: LoadedSnapshot;
  readonly manifest: SnapshotManifest;
  /** Changes with every version: the answer to `If-None-Match`. */
  readonly etag: string;
  readonly versionHeader: string;
  readonly loadedAt: Date;
}

export class LiveIndex {
  private live: LiveVersion | undefined;

  /** The version serving now; read it once per request and use that value throughout. */
  get current(): LiveVersion | undefined {
    return this.live;
  }

  /** Makes `snapshot` the served version; returns the one it replaced. */
  swap(snapshot: LoadedSnapshot, manifest: SnapshotManifest): LiveVersion | undefined {
    const previous = this.live;
    this.live = {
      snapshot,
      manifest,
      etag: `"v${manifest.version}-${manifest.snapshotId.slice(0, 12)}"`,
      versionHeader: String(manifest.version),
      loadedAt: new Date(),
    };
    return previous;
  }
}
