/**
 * A parse worker: takes blocks of CSV lines, answers with parseBlock's result, transferring the encoded rows.
 * One block at a time, in the order received (worker_threads messages are ordered).
 */
import { parentPort } from 'node:worker_threads';
import { parseBlock } from './parse-chunk.js';

export interface BlockRequest {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly checkHeader: boolean;
  readonly reportLimit: number;
}

parentPort?.on('message', (req: BlockRequest) => {
  try {
    const result = parseBlock(req.bytes, req.checkHeader, req.reportLimit);
    // The encoded rows own their ArrayBuffer (allocUnsafeSlow), so it moves without a copy.
    parentPort?.postMessage({ id: req.id, result }, [result.encoded.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort?.postMessage({ id: req.id, error: (err as Error).stack ?? String(err) });
  }
});
