/**
 * Writes built partition ranges into the snapshot file in partition order and fills its directory, with a bounded
 * number of ranges being built at once.
 *
 * Concurrency: one caller; each `add` and `drain` must settle before the next call. Builds run in parallel (on
 * worker threads when the RangeBuilder sends them there); their results are written in the order they were added.
 */
import type { FileHandle } from 'node:fs/promises';
import { writeFully } from '../../common/file-io.js';
import { DIRECTORY_ENTRY_BYTES, encodeEntry, HEADER_BYTES } from '../../common/snapshot/format.js';
import type { BuiltRange, RangeBuilder } from './partition-build.js';

/** Appends snapshot bytes to the output file after the header's place. */
export class Output {
  private position = HEADER_BYTES;
  constructor(readonly handle: FileHandle) {}

  get offset(): number {
    return this.position;
  }

  async write(bytes: Buffer): Promise<void> {
    await writeFully(this.handle, bytes, this.position);
    this.position += bytes.length;
  }
}

/** Writes built ranges in partition order and fills the directory. */
export class PartitionWriter {
  readonly directory: Buffer;
  duplicates = 0;
  rows = 0;
  constructor(
    readonly out: Output,
    readonly partitionBits: number,
  ) {
    this.directory = Buffer.alloc(2 ** partitionBits * DIRECTORY_ENTRY_BYTES);
  }

  async emit(range: BuiltRange): Promise<void> {
    this.duplicates += range.duplicates;
    for (const [i, part] of range.parts.entries()) {
      const bytes = Buffer.from(part.bytes.buffer, part.bytes.byteOffset, part.bytes.byteLength);
      encodeEntry(this.directory, range.first + i, {
        offset: this.out.offset,
        bytes: bytes.length,
        rows: part.rows,
        homeSlots: part.homeSlots,
        slotCount: part.slotCount,
        maxProbe: part.maxProbe,
        sha256: Buffer.from(part.sha256),
      });
      this.rows += part.rows;
      await this.out.write(bytes);
    }
  }
}

/**
 * Ranges being built, at most `concurrency` at once and at most `maxBytes` of rows in flight (one range may exceed
 * it alone), written in the order they were added.
 */
export class RangeJobs {
  private readonly inFlight: { result: Promise<BuiltRange>; bytes: number }[] = [];
  private bytes = 0;
  constructor(
    readonly writer: PartitionWriter,
    private readonly build: RangeBuilder,
    private readonly concurrency: number,
    private readonly maxBytes: number,
  ) {}

  async add(rows: Buffer, rowCount: number, first: number, count: number): Promise<void> {
    while (
      this.inFlight.length > 0 &&
      (this.inFlight.length >= this.concurrency || this.bytes + rows.length > this.maxBytes)
    ) {
      await this.emitOldest();
    }
    const result = this.build(rows, rowCount, first, count, this.writer.partitionBits);
    result.catch(() => undefined);
    this.inFlight.push({ result, bytes: rows.length });
    this.bytes += rows.length;
  }

  private async emitOldest(): Promise<void> {
    const job = this.inFlight.shift() as { result: Promise<BuiltRange>; bytes: number };
    this.bytes -= job.bytes;
    await this.writer.emit(await job.result);
  }

  async drain(): Promise<void> {
    while (this.inFlight.length > 0) await this.emitOldest();
  }
}
