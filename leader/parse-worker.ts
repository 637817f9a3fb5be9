/**
 * A worker of the ingest pool: parses blocks of CSV lines (parseBlock) and builds ranges of snapshot partitions
 * (buildRange), answering with the results and transferring their buffers. One job at a time, in the order
 * received (worker_threads messages are ordered).
 */
import { parentPort } from 'node:worker_threads';
import { parseBlock } from './parse-chunk.js';
import { buildRange } from './snapshot-build/partition-build.js';

export type WorkerRequest =
  | {
      readonly kind: 'parse';
      readonly id: number;
      readonly bytes: Uint8Array;
      readonly checkHeader: boolean;
      readonly reportLimit: number;
      /** Tests only (ParsePool.exitOnNextJob): exit without answering. */
      readonly exitNow?: boolean;
    }
  | {
      readonly kind: 'build';
      readonly id: number;
      readonly rows: Uint8Array;
      readonly rowCount: number;
      readonly first: number;
      readonly count: number;
      readonly partitionBits: number;
      /** Tests only (ParsePool.exitOnNextJob): exit without answering. */
      readonly exitNow?: boolean;
    };

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

parentPort?.on('message', (req: WorkerRequest) => {
  // In a worker thread, process.exit ends the thread (not the leader): the pool sees the exit, never an answer.
  if (req.exitNow === true) process.exit(1);
  try {
    if (req.kind === 'parse') {
      const result = parseBlock(req.bytes, req.checkHeader, req.reportLimit);
      // The encoded rows own their ArrayBuffer (allocUnsafeSlow), so it moves without a copy.
      parentPort?.postMessage({ id: req.id, result }, [result.encoded.buffer as ArrayBuffer]);
      return;
    }
    const result = buildRange([asBuffer(req.rows)], req.rowCount, req.first, req.count, req.partitionBits);
    parentPort?.postMessage(
      { id: req.id, result },
      result.parts.map((p) => p.bytes.buffer as ArrayBuffer),
    );
  } catch (err) {
    parentPort?.postMessage({ id: req.id, error: (err as Error).stack ?? String(err) });
  }
});
