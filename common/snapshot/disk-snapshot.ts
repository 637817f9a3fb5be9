/**
 * Disk mode, for data larger than memory: only the directory lives in memory. A lookup reads the probe window of
 * the id's slot table (one positional read of at most maxProbe slots), then the record (a second read), with
 * callback `fs.read` on libuv's pool so the event loop never waits. Memory does not grow with the row count.
 *
 * Concurrency: any number of lookups at once. `close` waits for the lookups in progress, then closes the file; the
 * owner calls it once, after the version stopped being served.
 */
import { read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { PartitionDirectory } from './directory.js';
import { EMPTY_SLOT, type PartitionEntry, SLOT_BYTES, type SnapshotHeader } from './format.js';
import type { LoadedSnapshot } from './reader.js';
import { MAX_RECORD_BYTES, recordHasId, renderRecord } from './record-codec.js';
import type { PartitionSpan } from './verifier.js';

function readAt(fd: number, length: number, position: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.allocUnsafe(length);
    read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(buf.subarray(0, n))));
  });
}

export class DiskSnapshot implements LoadedSnapshot {
  readonly mode = 'disk' as const;
  readonly residentBytes: number;
  readonly heldRows: number;
  private readonly directory: PartitionDirectory;
  private readonly fd: number;
  private inFlight = 0;
  private closing: (() => void) | undefined;

  constructor(
    readonly header: SnapshotHeader,
    partitions: PartitionEntry[],
    private readonly handle: FileHandle,
    /** The partitions the file holds (verified); a shard replica's file has only its shard's. */
    private readonly span: PartitionSpan = { first: 0, end: partitions.length },
  ) {
    this.fd = handle.fd;
    this.directory = new PartitionDirectory(header.partitionBits, partitions);
    this.residentBytes = this.directory.bytes;
    this.heldRows = 0;
    for (let i = span.first; i < span.end; i++) this.heldRows += partitions[i].rows;
  }

  lookup(id: string): Promise<string | undefined> {
    this.inFlight++;
    return this.find(id).finally(() => {
      if (--this.inFlight === 0 && this.closing !== undefined) this.closing();
    });
  }

  private async find(id: string): Promise<string | undefined> {
    const { h1, partition, home, end } = this.directory.locate(id);
    // Outside the partitions held the file has a hole: never read it (the read path answers 421 before this).
    if (home >= end || partition < this.span.first || partition >= this.span.end) return undefined;
    const start = this.directory.offsets[partition];
    const slots = await readAt(this.fd, (end - home) * SLOT_BYTES, start + home * SLOT_BYTES);
    const records = start + this.directory.slotCount[partition] * SLOT_BYTES;
    for (let s = 0; s + SLOT_BYTES <= slots.length; s += SLOT_BYTES) {
      const off = slots.readUInt32LE(s + 4);
      if (off === EMPTY_SLOT) return undefined;
      if (slots.readUInt32LE(s) !== h1) continue;
      // A second read for the record; another only on a 32-bit fingerprint collision inside the window.
      const at = records + off;
      const rec = await readAt(this.fd, Math.min(MAX_RECORD_BYTES, this.directory.ends[partition] - at), at);
      if (recordHasId(rec, 0, id)) return renderRecord(rec, 0, id);
    }
    return undefined;
  }

  async close(): Promise<void> {
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.closing = resolve));
    await this.handle.close();
  }
}
