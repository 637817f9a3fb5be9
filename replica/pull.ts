/**
 * Pulls one snapshot file from the leader into a temporary file and verifies every byte as it arrives, so the file
 * is never read back: the header and the directory first (two small Range requests, checked against the manifest),
 * then the body (one Range request, resumed where a cut one stopped), each partition hashed as its bytes arrive
 * and, in memory mode, copied into memory, while the same bytes are appended to the file; then the directory, and
 * fsync. What this costs the core that also serves reads is kept small (docs/design.md §6: reads during a swap within 2x
 * of steady state): one chunk at a time with a rest after each (PULL_REST_FACTOR), nothing allocated per chunk,
 * and no use of node:http on an http: leader (range-get.ts says why).
 *
 * A shard replica (SHARD=k/S) asks for only its shard's byte range of the body (common/snapshot/shard.ts) and
 * verifies only those partitions; its `part` file is sparse: the header, a hole, the shard's bytes at their real
 * offsets, a hole, the directory. So lookups use the file's own offsets, and the disk holds about 1/S of the file.
 *
 * Concurrency: one pull per `part` file at a time (the Syncer runs one load at a time).
 */
import { open, rm, stat } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { errorText } from '../common/error-text.js';
import { AppError, SnapshotError } from '../common/errors.js';
import { readFully, writeFully } from '../common/file-io.js';
import type { Logger } from '../common/logger.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { HEADER_BYTES, type PartitionEntry, type SnapshotHeader } from '../common/snapshot/format.js';
import { MemoryArena } from '../common/snapshot/memory-arena.js';
import { verifyFromFile } from '../common/snapshot/reader.js';
import { type Shard, shardRange } from '../common/snapshot/shard.js';
import {
  BodyVerifier,
  checkDirectory,
  checkHeader,
  directoryRange,
  type ExpectedSnapshot,
} from '../common/snapshot/verifier.js';
import { getRange, RangeRefused, rangeRefusal, TransferCut } from './range-get.js';

/** Tries at one file transfer: a cut transfer resumes from the bytes already verified and on disk. */
const TRANSFER_ATTEMPTS = 3;
/** A transfer that receives nothing for this long is cut (and resumed), so a stalled leader cannot hold the load. */
const TRANSFER_IDLE_MS = 30_000;
/**
 * Reads keep the core during a pull: after each chunk (verified, written) the pull rests this many times as long as
 * the chunk took, 1 ms at least, so it takes about a third of a core that also serves reads; a replica that received
 * no read since the last chunk (starting, not ready yet, or idle) does not rest. Chosen with the swap benchmark
 * (BENCHMARKS.md, Swap): without resting the pull's bursts starve reads (p99 during swaps 1.34-2.62x of steady),
 * with 2 the swap windows' p99 was steadiest for a 1M-row version live on all 3 replicas in about a second.
 */
const PULL_REST_FACTOR = 2;

export interface PullContext {
  readonly leaderUrl: string;
  readonly replicaToken: string;
  readonly logger: Logger;
  /** Told of every byte received from the leader (metrics). */
  readonly onBytes: (n: number) => void;
  /** Reads the replica has received so far: the pull rests between chunks only while this moves. */
  readonly readsReceived: () => number;
}

/** A version's header and directory, fetched and checked before its body: what the body is verified against. */
interface Layout {
  readonly head: Buffer;
  readonly header: SnapshotHeader;
  readonly directory: Buffer;
  readonly partitions: PartitionEntry[];
}

/**
 * Pulls `m`'s file into `part` (fsynced) and returns the verifier that has taken every byte of it (with `keep`, into
 * a MemoryArena: memorySnapshotOf gives the version in memory); with `shard`, only that shard's bytes. 'unverified'
 * when the leader ignored Range and sent the file whole: it is in `part`, fsynced, still to be verified from disk.
 * A cut transfer is resumed (TRANSFER_ATTEMPTS tries in all).
 * Bytes that fail verification remove `part` (SnapshotError); a transfer that stays cut leaves it
 * (REPLICA_SYNC_FAILED), and the next pull of the same file verifies what it holds and asks only for the rest.
 */
export async function pullSnapshot(
  ctx: PullContext,
  m: SnapshotManifest,
  expect: ExpectedSnapshot,
  part: string,
  keep: boolean,
  shard?: Shard,
): Promise<BodyVerifier | 'unverified'> {
  let layout: Layout | 'unverified' | undefined;
  let verifier: BodyVerifier | undefined;
  /** Whether the verifier began with bytes an earlier process left on disk (a crash may have torn their end). */
  let fromDisk = false;
  for (let attempt = 1; ; attempt++) {
    try {
      layout ??= await fetchLayout(ctx, m, expect, part);
      if (layout === 'unverified') return layout;
      if (verifier === undefined) {
        verifier = await startPart(ctx, part, layout, keep, shard);
        // Compared with where its bytes begin: a shard's fresh verifier starts past the header.
        fromDisk = verifier.position > verifier.start;
      }
      await transferBody(ctx, m, part, verifier);
      await finishPart(part, layout.directory, layout.header);
      return verifier;
    } catch (err) {
      if (err instanceof SnapshotError) {
        await rm(part, { force: true });
        // A partition begun from disk and finished from the network: the bytes on disk may be the bad ones.
        if (fromDisk) {
          ctx.logger.warn(
            { version: m.version, err: err.message },
            'a resumed transfer does not verify; starting over',
          );
          verifier = undefined;
          fromDisk = false;
          attempt--;
          continue;
        }
        throw err;
      }
      if (!(err instanceof TransferCut) || attempt >= TRANSFER_ATTEMPTS) {
        throw err instanceof AppError
          ? err
          : new AppError('REPLICA_SYNC_FAILED', `pulling version ${m.version}: ${errorText(err)}`);
      }
      ctx.logger.warn(
        { version: m.version, have: verifier?.position ?? 0, attempt, err: errorText(err) },
        'file transfer cut; resuming',
      );
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

/**
 * The header (checked against the manifest), then the directory it points to (checked against the header).
 * 'unverified' when the leader answered the header's range with the whole file, now written to `part`.
 */
async function fetchLayout(
  ctx: PullContext,
  m: SnapshotManifest,
  expect: ExpectedSnapshot,
  part: string,
): Promise<Layout | 'unverified'> {
  let head: Buffer;
  try {
    head = await fetchSmall(ctx, m, 0, HEADER_BYTES);
  } catch (err) {
    if (!(err instanceof RangeRefused) || err.status !== 200) throw err;
    await receiveWhole(ctx, m, part);
    return 'unverified';
  }
  const header = checkHeader(head, m.bytes, expect);
  const { start, end } = directoryRange(header);
  const directory = await fetchSmall(ctx, m, start, end);
  return { head, header, directory, partitions: checkDirectory(header, directory) };
}

/** Bytes [start, end) of `m`'s file held whole in memory (the header, the directory: small). */
async function fetchSmall(
  ctx: PullContext,
  m: SnapshotManifest,
  start: number,
  end: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  // A copy of each chunk: range-get reuses its buffer.
  await fetchRange(ctx, m, start, end, (chunk) => void chunks.push(Buffer.from(chunk)));
  return Buffer.concat(chunks);
}

/**
 * A verifier that has taken the body bytes `part` already holds (left by a transfer cut before this pull began),
 * or a fresh `part` holding only the header (and, for a shard, a hole up to the shard's first byte). Bytes on disk
 * are verified like any others: a part that does not belong to this file, or fails its checksums, is discarded.
 */
async function startPart(
  ctx: PullContext,
  part: string,
  layout: Layout,
  keep: boolean,
  shard: Shard | undefined,
): Promise<BodyVerifier> {
  const span = shard === undefined ? undefined : shardRange(layout.header, layout.partitions, shard);
  const fresh = () =>
    new BodyVerifier(
      layout.header,
      layout.partitions,
      keep ? new MemoryArena(layout.partitions, span) : undefined,
      span,
    );
  const size = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  if (size > HEADER_BYTES) {
    const h = await open(part, 'r+');
    try {
      const onDisk = Buffer.alloc(HEADER_BYTES);
      await readFully(h, onDisk, 0);
      if (onDisk.equals(layout.head)) {
        const verifier = fresh();
        await verifyFromFile(h, verifier, Math.min(size, verifier.end));
        await h.truncate(verifier.position);
        ctx.logger.info({ part, have: verifier.position }, 'resuming a transfer left on disk');
        return verifier;
      }
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      ctx.logger.warn({ part, err: err.message }, 'a transfer left on disk does not verify; starting over');
    } finally {
      await h.close();
    }
  }
  const verifier = fresh();
  const h = await open(part, 'w');
  try {
    await writeFully(h, layout.head, 0);
    // A shard's bytes go at their own offsets: what lies before them stays a hole (no disk used).
    if (verifier.position > HEADER_BYTES) await h.truncate(verifier.position);
  } finally {
    await h.close();
  }
  return verifier;
}

/**
 * Receives the body from `verifier.position` to its end, verifying each chunk and appending it to `part`. The
 * append is awaited before the next chunk is read, so `part` always holds exactly the bytes the verifier has taken
 * (a cut resumes from there). Throws TransferCut when the transfer broke off, SnapshotError on bytes that do not
 * verify.
 */
async function transferBody(
  ctx: PullContext,
  m: SnapshotManifest,
  part: string,
  verifier: BodyVerifier,
): Promise<void> {
  if (verifier.position >= verifier.end) return;
  const out = await open(part, 'a');
  try {
    // The file must hold exactly what has verified: a write lost with a cut would leave a hole, found here.
    const size = (await out.stat()).size;
    if (size !== verifier.position) {
      throw new AppError(
        'REPLICA_SYNC_FAILED',
        `the transfer file holds ${size} bytes, not the ${verifier.position} verified; pulling again`,
      );
    }
    let reads = ctx.readsReceived();
    await fetchRange(ctx, m, verifier.position, verifier.end, async (chunk) => {
      const start = performance.now();
      verifier.accept(chunk);
      await writeFully(out, chunk, null);
      const now = ctx.readsReceived();
      if (now === reads) return;
      reads = now;
      // The next chunk waits in the socket meanwhile (the leader's send waits too).
      await new Promise((r) => setTimeout(r, Math.max(1, PULL_REST_FACTOR * (performance.now() - start))));
    });
  } finally {
    await out.close();
  }
  if (verifier.position < verifier.end) {
    throw new TransferCut(`the leader's answer ended at byte ${verifier.position} of ${verifier.end}`);
  }
}

/**
 * Appends the (already verified) directory at its offset (after a hole past a shard's last byte) and fsyncs, so a
 * file that verified is on disk, whole, when it is renamed.
 */
async function finishPart(part: string, directory: Buffer, header: SnapshotHeader): Promise<void> {
  const fileBytes = header.fileBytes;
  const h = await open(part, 'a');
  try {
    if ((await h.stat()).size < header.directoryOffset) await h.truncate(header.directoryOffset);
    await writeFully(h, directory, null);
    const size = (await h.stat()).size;
    if (size !== fileBytes) {
      throw new AppError(
        'REPLICA_SYNC_FAILED',
        `the transfer file is ${size} bytes, not ${fileBytes}; pulling again`,
      );
    }
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Bytes [start, end) of `m`'s file, chunk by chunk to `onChunk` (the next chunk is read once its promise settles).
 * An http: leader is read through range-get (nothing allocated per chunk, no node:http objects); https through
 * node:https. Throws TransferCut (worth resuming), RangeRefused (the leader answered another status), or what
 * `onChunk` throws.
 */
async function fetchRange(
  ctx: PullContext,
  m: SnapshotManifest,
  start: number,
  end: number,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  const url = fileUrl(ctx, m);
  const headers = { authorization: `Bearer ${ctx.replicaToken}` };
  const take = (chunk: Buffer) => {
    ctx.onBytes(chunk.length);
    return onChunk(chunk);
  };
  try {
    if (url.protocol === 'http:') {
      await getRange({ url, headers, start, end, idleMs: TRANSFER_IDLE_MS }, take);
      return;
    }
    const res = await request(url, { ...headers, range: `bytes=${start}-${end - 1}` });
    const refused = rangeRefusal(res.statusCode ?? 0, res.headers['content-range'], start);
    if (refused !== undefined) {
      res.destroy();
      throw refused;
    }
    await receive(res, take);
  } catch (err) {
    if (!(err instanceof RangeRefused) || err.status === 200) throw err;
    const message = `leader ${err.message} for bytes ${start}-${end - 1} of version ${m.version}'s file`;
    // A 5xx may pass (resume later); anything else will not.
    throw err.status >= 500 ? new TransferCut(message) : new AppError('REPLICA_SYNC_FAILED', message);
  }
}

/** Writes a whole-file answer (a leader that ignored Range) to a fresh `part`, fsynced. */
async function receiveWhole(ctx: PullContext, m: SnapshotManifest, part: string): Promise<void> {
  const res = await request(fileUrl(ctx, m), { authorization: `Bearer ${ctx.replicaToken}` });
  if (res.statusCode !== 200) {
    res.destroy();
    throw new AppError(
      'REPLICA_SYNC_FAILED',
      `leader answered ${res.statusCode} for version ${m.version}'s file`,
    );
  }
  const out = await open(part, 'w');
  try {
    await receive(res, (chunk) => {
      ctx.onBytes(chunk.length);
      return writeFully(out, chunk, null);
    });
    await out.sync();
  } finally {
    await out.close();
  }
}

/** One GET through node:http(s). Throws TransferCut when the connection fails or stalls. */
function request(url: URL, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = (url.protocol === 'https:' ? httpsGet : httpGet)(url, { headers }, resolve);
    req.setTimeout(TRANSFER_IDLE_MS, () =>
      req.destroy(new TransferCut(`no bytes for ${TRANSFER_IDLE_MS} ms`)),
    );
    req.once('error', (err) => reject(err instanceof TransferCut ? err : new TransferCut(errorText(err))));
  });
}

/** Hands every chunk of `res` to `take`, one at a time (awaited). Throws TransferCut when the answer broke off. */
async function receive(res: IncomingMessage, take: (chunk: Buffer) => void | Promise<void>): Promise<void> {
  try {
    for await (const chunk of res) await take(chunk as Buffer);
  } catch (err) {
    res.destroy();
    if (err instanceof AppError || err instanceof TransferCut || isFileError(err)) throw err;
    throw new TransferCut(errorText(err));
  }
}

function fileUrl(ctx: PullContext, m: SnapshotManifest): URL {
  return new URL(`${ctx.leaderUrl}/snapshots/${m.version}/file`);
}

function isFileError(err: unknown): boolean {
  return typeof (err as NodeJS.ErrnoException).syscall === 'string';
}
