/**
 * The notices that tell one replica a new version is current: one campaign per replica and publish, each a POST of
 * the manifest and, for a failure that may pass (no answer, a timeout, a 5xx such as a refused or cut file), the
 * same again after an exponential backoff with jitter, a bounded number of times. A client error (401, 400) is not
 * retried, since sending the same request again cannot help. A later publish stops the campaign of an earlier one
 * (`stopCampaign`): replicas follow the newest *published* version, which after a rollback has a lower number. A
 * replica that no notice reaches catches up by its own poll (docs/design.md §5), so giving up is safe.
 *
 * A campaign records what the replica answered in the registry's record of it (`NoticeTarget`, replica-registry.ts):
 * the version and shard it serves, when it was last heard from, and why the last notice failed.
 *
 * Concurrency: one event loop. Each target has at most one campaign at a time (`run` stops the one before); a
 * campaign's state changes are synchronous, between its awaits.
 */
import { errorText } from '../common/error-text.js';
import type { Logger } from '../common/logger.js';
import type { SnapshotManifest } from '../common/protocol.js';
import { type CappedText, readCappedText } from '../common/reply-body.js';
import { formatShard, parseShard } from '../common/snapshot/shard.js';

/** How notices are retried. */
export interface NoticeRetry {
  /** Notices sent for one version at most: the first and its retries. */
  readonly maxAttempts: number;
  /** Wait before the first retry; it doubles for each next one, up to maxDelayMs, less up to half as jitter. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** 8 attempts over about 45 s: enough for a replica that restarts or a short partition. */
export const NOTICE_RETRY: NoticeRetry = Object.freeze({
  maxAttempts: 8,
  baseDelayMs: 500,
  maxDelayMs: 15_000,
});

/** A replica's answer to a notice is a small JSON object; anything larger is not one, and is not read further. */
export const MAX_NOTICE_REPLY_BYTES = 64 * 1024;

/** An error code as our errors have them (common/errors.ts): shown in GET /replicas only in this shape. */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** The real timer behind a notice's backoff. */
function realTimer(fn: () => void, ms: number): () => void {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
}

/** The notice campaign for one replica: the last (or current) one. */
export interface NoticeStatus {
  readonly version: number;
  /** sending, or waiting to retry; then done, failed (gave up or refused), or superseded by a later publish. */
  readonly state: 'sending' | 'waiting' | 'done' | 'failed' | 'superseded';
  readonly attempts: number;
  readonly nextAttemptAt: string | null;
}

/** A campaign in progress or ended; the registry shows it as a NoticeStatus. */
export interface Campaign {
  version: number;
  state: NoticeStatus['state'];
  attempts: number;
  nextAttemptAt: Date | null;
  readonly abort: AbortController;
  /** Ends the wait before the next attempt at once (used by cancel). */
  wake: () => void;
}

/** What a campaign reads and writes of the replica it notifies: the registry's record of it. */
export interface NoticeTarget {
  readonly url: string;
  version: number | null;
  shard: string | null;
  lastContact: Date | null;
  lastError: string | null;
  /** The version whose notice failed last: a poll reporting it served clears `lastError`. */
  failedVersion: number | null;
  campaign: Campaign | undefined;
}

type Outcome = 'done' | 'retry' | 'refused' | 'cancelled';

/** What the campaigns need: the replicas' token, the time a notice may take, and fakes for tests. */
export interface NoticeOptions {
  readonly replicaToken: string;
  /** PUSH_TIMEOUT_MS: how long one notice waits for the replica to load the version and answer. */
  readonly pushTimeoutMs: number;
  readonly logger: Logger;
  /** Overrides of NOTICE_RETRY (tests use short delays). */
  readonly retry?: Partial<NoticeRetry>;
  /** The clock, ms since the epoch; a fake in tests. */
  readonly now?: () => number;
  /** Runs `fn` after `ms` (a notice's backoff) and returns what cancels it; a fake in tests. */
  readonly setTimer?: (fn: () => void, ms: number) => () => void;
  /** Called when a replica's answer says it serves another version or shard. */
  readonly onServedChange?: () => void;
}

/** Runs the notice campaigns of one registry. */
export class NoticeCampaigns {
  private readonly retry: NoticeRetry;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => () => void;
  private readonly replicaToken: string;
  private readonly pushTimeoutMs: number;
  private readonly logger: Logger;

  constructor(private readonly options: NoticeOptions) {
    this.retry = { ...NOTICE_RETRY, ...options.retry };
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? realTimer;
    this.replicaToken = options.replicaToken;
    this.pushTimeoutMs = options.pushTimeoutMs;
    this.logger = options.logger;
  }

  /**
   * Notifies `e` of `manifest` until it takes it, refuses it, the attempts run out, or the campaign is stopped
   * (the one `e` had before is stopped first). Never rejects.
   */
  run(e: NoticeTarget, manifest: SnapshotManifest): Promise<void> {
    return this.campaign(e, manifest);
  }

  private async campaign(e: NoticeTarget, manifest: SnapshotManifest): Promise<void> {
    stopCampaign(e.campaign, 'superseded');
    const c: Campaign = {
      version: manifest.version,
      state: 'sending',
      attempts: 0,
      nextAttemptAt: null,
      abort: new AbortController(),
      wake: () => undefined,
    };
    e.campaign = c;
    for (;;) {
      c.attempts++;
      c.state = 'sending';
      c.nextAttemptAt = null;
      const outcome = await this.send(e, manifest, c);
      if (outcome === 'cancelled' || c.abort.signal.aborted) return;
      if (outcome === 'done') {
        c.state = 'done';
        return;
      }
      if (outcome === 'refused' || c.attempts >= this.retry.maxAttempts) {
        c.state = 'failed';
        this.logger.warn(
          { replica: e.url, version: manifest.version, attempts: c.attempts, err: e.lastError },
          'gave up notifying a replica; it catches up when it polls',
        );
        return;
      }
      const delay = this.backoffMs(c.attempts);
      c.state = 'waiting';
      c.nextAttemptAt = new Date(this.now() + delay);
      await new Promise<void>((resolve) => {
        const cancel = this.setTimer(resolve, delay);
        c.wake = () => {
          cancel();
          resolve();
        };
      });
      if (c.abort.signal.aborted) return;
    }
  }

  /** The wait after `attempts` failed attempts: exponential, capped, with up to half taken off at random. */
  private backoffMs(attempts: number): number {
    const full = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempts - 1));
    return Math.round(full * (0.5 + Math.random() / 2));
  }

  /** One notice: POST the manifest and wait for the replica to load it (or say why it cannot). */
  private async send(e: NoticeTarget, manifest: SnapshotManifest, c: Campaign): Promise<Outcome> {
    const timeout = AbortSignal.timeout(this.pushTimeoutMs);
    let res: Response;
    let reply: CappedText;
    try {
      res = await fetch(`${e.url}/internal/snapshots`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.replicaToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(manifest),
        signal: AbortSignal.any([c.abort.signal, timeout]),
        // A replica answers; it never sends the leader (and its token) elsewhere.
        redirect: 'manual',
      });
      reply = await readCappedText(res, MAX_NOTICE_REPLY_BYTES);
    } catch (err) {
      if (c.abort.signal.aborted) return 'cancelled';
      const why = timeout.aborted
        ? `no answer within PUSH_TIMEOUT_MS (${this.pushTimeoutMs} ms)`
        : errorText(err);
      this.failed(e, manifest, c, why);
      return 'retry';
    }
    if (c.abort.signal.aborted) return 'cancelled';
    e.lastContact = new Date(this.now());
    const body = reply.tooLarge ? {} : parseReply(reply.text);
    if (res.ok && !reply.tooLarge) {
      const shard = typeof body.shard === 'string' ? shardText(body.shard) : e.shard;
      const moved = (typeof body.version === 'number' && body.version !== e.version) || shard !== e.shard;
      if (typeof body.version === 'number') e.version = body.version;
      e.shard = shard;
      e.lastError = null;
      e.failedVersion = null;
      this.logger.info(
        { replica: e.url, version: e.version, attempts: c.attempts },
        'replica took the version',
      );
      if (moved) this.options.onServedChange?.();
      return 'done';
    }
    // GET /replicas shows the status and a well-formed error code, never the replica's text: whatever answers at
    // that address chooses it. The message goes to the log, shortened, for whoever debugs the replica.
    const code = typeof body.error === 'string' && ERROR_CODE.test(body.error) ? ` ${body.error}` : '';
    const why = reply.tooLarge
      ? `${res.status} reply larger than ${MAX_NOTICE_REPLY_BYTES} bytes`
      : `${res.status}${code}`;
    const message = typeof body.message === 'string' ? body.message.slice(0, 300) : undefined;
    this.failed(e, manifest, c, why, message);
    if (reply.tooLarge) return 'refused';
    // 408 and 429 say "later"; any other 4xx (or a 3xx) says the request itself is wrong (token, body, address):
    // retrying cannot help.
    const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
    return retryable ? 'retry' : 'refused';
  }

  private failed(
    e: NoticeTarget,
    manifest: SnapshotManifest,
    c: Campaign,
    why: string,
    message?: string,
  ): void {
    e.lastError = `version ${manifest.version}: ${why}`;
    e.failedVersion = manifest.version;
    this.logger.warn(
      { replica: e.url, version: manifest.version, attempt: c.attempts, err: why, message },
      'replica notice failed',
    );
  }
}

/** A campaign as GET /replicas shows it; null when the replica never had one. */
export function noticeStatus(c: Campaign | undefined): NoticeStatus | null {
  return c === undefined
    ? null
    : {
        version: c.version,
        state: c.state,
        attempts: c.attempts,
        nextAttemptAt: c.nextAttemptAt?.toISOString() ?? null,
      };
}

/** A replica's JSON answer, or nothing usable. */
function parseReply(text: string): {
  version?: unknown;
  shard?: unknown;
  error?: unknown;
  message?: unknown;
} {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? v : {};
  } catch {
    return {};
  }
}

/** Ends a campaign still running, as `state`: aborts its request in flight and its wait; its promise resolves. */
export function stopCampaign(c: Campaign | undefined, state: 'done' | 'superseded'): void {
  if (c === undefined || c.state === 'done' || c.state === 'failed' || c.state === 'superseded') return;
  c.state = state;
  c.abort.abort();
  c.wake();
}

/** A replica's word for its shard, normalised to `k/S`; null for none, 1 shard, or a malformed one. */
export function shardText(text: string | null | undefined): string | null {
  if (text == null || text === '') return null;
  const shard = parseShard(text);
  return typeof shard === 'string' || shard.count === 1 ? null : formatShard(shard);
}
