/**
 * Builds a memory-mode version from verified bytes: a BodyVerifier hands each body byte to the arena as it
 * arrives (a BodySink), the arena copies it into the partition's place, and once the verifier is done the arena's
 * partitions become a MemorySnapshot. The verifier proves the bytes; the arena only keeps them.
 *
 * One ArrayBuffer holds the whole body: one allocation per version rather than one per partition, because V8
 * answers each large external allocation under pressure with a step of marking on the event loop (measured:
 * several 5-15 ms pauses per 1M-row swap). Each partition starts at a multiple of PARTITION_ALIGN so that
 * MemorySnapshot's Uint32Array views of it are aligned.
 *
 * Concurrency: fed by one BodyVerifier, in file order; read once, after the verifier is done.
 */
import type { PartitionEntry } from './format.js';
import { MemorySnapshot } from './memory-snapshot.js';
import type { BodySink, BodyVerifier, PartitionSpan } from './verifier.js';

/** Partitions kept in memory start at multiples of this (MemorySnapshot reads slots as 32-bit words). */
export const PARTITION_ALIGN = 8;

/** The bytes of the partitions of a span (all of them, or a shard's), each in its aligned slice of one buffer. */
export class MemoryArena implements BodySink {
  /** Partition `span.first + i`'s place: a slice of one buffer, starting at a multiple of PARTITION_ALIGN. */
  readonly slices: readonly Buffer[];
  readonly span: PartitionSpan;
  private readonly buffer: ArrayBuffer;

  constructor(
    partitions: readonly PartitionEntry[],
    span: PartitionSpan = { first: 0, end: partitions.length },
  ) {
    this.span = { first: span.first, end: span.end };
    const held = partitions.slice(span.first, span.end);
    let total = 0;
    const starts: number[] = [];
    for (const e of held) {
      starts.push(total);
      total += Math.ceil(e.bytes / PARTITION_ALIGN) * PARTITION_ALIGN;
    }
    // allocUnsafeSlow: its own ArrayBuffer, starting at offset 0 (aligned), never a slice of Node's pool.
    const arena = Buffer.allocUnsafeSlow(total);
    this.buffer = arena.buffer as ArrayBuffer;
    this.slices = held.map((e, i) => arena.subarray(starts[i], starts[i] + e.bytes));
  }

  take(partition: number, at: number, piece: Buffer): void {
    piece.copy(this.slices[partition - this.span.first], at);
  }

  /**
   * The verified version in memory, once `verifier` (which fed this arena) has taken every byte of its span: it
   * answers ids of the partitions held only, and owns the arena's memory (freed at its `close`).
   */
  toSnapshot(verifier: BodyVerifier): MemorySnapshot {
    if (verifier.sink !== this) throw new Error('toSnapshot needs the verifier that fed this arena');
    if (!verifier.done) throw new Error('toSnapshot needs a complete body');
    return new MemorySnapshot(
      verifier.header,
      [...verifier.partitions],
      [...this.slices],
      this.span.first,
      this.buffer,
    );
  }
}

/** The memory-mode version proved by `verifier`, which kept the body in a MemoryArena as it verified it. */
export function memorySnapshotOf(verifier: BodyVerifier): MemorySnapshot {
  const arena = verifier.sink;
  if (!(arena instanceof MemoryArena)) throw new Error('memorySnapshotOf needs a body kept in a MemoryArena');
  return arena.toSnapshot(verifier);
}
