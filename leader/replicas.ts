/**
 * The replicas the leader knows (configured in REPLICAS, found behind REPLICAS_DNS, or registered by their own
 * polls), what each serves, and the notices that tell them a new version is current.
 *
 * A notice that fails for a reason that may pass (no answer, a timeout, a 5xx such as a refused or cut file) is
 * sent again with exponential backoff and jitter, a bounded number of times; a client error (401, 400) is not
 * retried, since sending the same request again cannot help. A later publish cancels the retries of an earlier
 * one: replicas follow the newest *published* version, which after a rollback has a lower number. A replica that
 * no notice reaches catches up by its own poll (docs/design.md §5), so giving up is safe.
 *
 * A replica that registered by polling and is then not heard from (no poll, no answer to a notice) for `expiryMs`
 * is forgotten: a replica that died would otherwise get failing notices forever and keep the version it last
 * served from being pruned. Configured replicas stay (the operator listed them); DNS ones follow the DNS answer.
 *
 * A replica's poll also says which version it was told to serve and what failed when it tried to load one (codes and
 * numbers only): `GET /replicas` shows a replica that cannot load the current version, or serves an older one than
 * it was told to (`behind`), even when it is only ever heard from by its polls. A replica silent for STALE_SYNC_INTERVALS
 * of its sync intervals is shown `stale`: its version and lag are what it said last.
 *
 * Concurrency: called from the leader's request handlers and ingest on one event loop. State changes are
 * synchronous; each replica has at most one notice campaign at a time, which only records its outcome.
 */
import { DEFAULTS } from '../common/config.js';
import { errorText } from '../common/error-text.js';
import type { Logger } from '../common/logger.js';
import type { ReplicaError, SnapshotManifest } from '../common/protocol.js';
import { type CappedText, readCappedText } from '../common/reply-body.js';
import { formatShard, parseShard } from '../common/snapshot/shard.js';
import { type DnsTarget, type Resolve4, resolveReplicaUrls } from './replica-dns.js';

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

/** A replica not heard from for this many of its sync intervals is shown stale. */
export const STALE_SYNC_INTERVALS = 3;

/** What a replica's poll says besides its address and served version (common/protocol.ts headers). */
export interface PollReport {
  /** The version it was told to serve; null when it did not say. */
  readonly wantedVersion: number | null;
  /** Its last failure to load a version; null when none. */
  readonly error: ReplicaError | null;
  /** Its SYNC_INTERVAL_MS; null when it did not say. */
  readonly syncIntervalMs: number | null;
  /** Its SHARD, `k/S` (a malformed one counts as none); null or absent for a replica of the whole data set. */
  readonly shard?: string | null;
}

/** How often the addresses behind REPLICAS_DNS are looked up again between publishes. */
export const DNS_REFRESH_MS = 30_000;

export interface ReplicaRegistryOptions {
  /** Overrides of NOTICE_RETRY (tests use short delays). */
  readonly retry?: Partial<NoticeRetry>;
  /** REPLICAS_DNS: also notify the replicas behind this name. */
  readonly dns?: DnsTarget | null;
  /** The DNS lookup; a fake in tests. */
  readonly resolve?: Resolve4;
  /** How often `start` refreshes the DNS answer; DNS_REFRESH_MS by default. */
  readonly dnsRefreshMs?: number;
  /** Called when a replica is seen serving another version, or is forgotten (the leader prunes then). */
  readonly onServedChange?: () => void;
  /** REPLICA_EXPIRY_MS: forget a registered replica not heard from for this long; 0 or absent: never. */
  readonly expiryMs?: number;
  /** The clock, ms since the epoch; a fake in tests. */
  readonly now?: () => number;
  /** Runs `fn` after `ms` (a notice's backoff) and returns what cancels it; a fake in tests. */
  readonly setTimer?: (fn: () => void, ms: number) => () => void;
}

/** The real timer behind a notice's backoff. */
function realTimer(fn: () => void, ms: number): () => void {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
}

type Source = 'config' | 'dns' | 'registered';

/** The notice campaign for one replica: the last (or current) one. */
export interface NoticeStatus {
  readonly version: number;
  /** sending, or waiting to retry; then done, failed (gave up or refused), or superseded by a later publish. */
  readonly state: 'sending' | 'waiting' | 'done' | 'failed' | 'superseded';
  readonly attempts: number;
  readonly nextAttemptAt: string | null;
}

export interface ReplicaStatus {
  readonly url: string;
  /** How the leader learned of it: the REPLICAS setting, the REPLICAS_DNS name, or the replica's own poll. */
  readonly source: Source;
  /** The version the replica last said it serves; null before it said anything. */
  readonly version: number | null;
  /** The shard it serves, `k/S`, as it said (SHARD); null for a replica of the whole data set. */
  readonly shard: string | null;
  readonly lastContact: string | null;
  /** Not heard from for STALE_SYNC_INTERVALS of its sync intervals (or never): what it said last may be old. */
  readonly stale: boolean;
  /**
   * Why the last notice failed (a refused file says its code and reason), else the failure its last poll reported
   * (`version 7: 502 SNAPSHOT_CHECKSUM_MISMATCH (reported by its poll)`); null once the replica caught up.
   */
  readonly lastError: string | null;
  /** The version it was told to serve, as its last poll said; null when unknown. */
  readonly wantedVersion: number | null;
  /** It serves another version than `wantedVersion` because loading that one failed (it said so). */
  readonly behind: boolean;
  /** 0 when it serves the current version; else versions behind (at least 1); null when unknown. */
  readonly lag: number | null;
  readonly notice: NoticeStatus | null;
}

interface Campaign {
  version: number;
  state: NoticeStatus['state'];
  attempts: number;
  nextAttemptAt: Date | null;
  readonly abort: AbortController;
  /** Ends the wait before the next attempt at once (used by cancel). */
  wake: () => void;
}

interface Entry {
  readonly url: string;
  source: Source;
  version: number | null;
  shard: string | null;
  lastContact: Date | null;
  lastError: string | null;
  /** The version whose notice failed last: a poll reporting it served clears `lastError`. */
  failedVersion: number | null;
  /** What its last poll said (null before its first poll). */
  report: PollReport | null;
  campaign: Campaign | undefined;
}

type Outcome = 'done' | 'retry' | 'refused' | 'cancelled';

export class ReplicaRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly retry: NoticeRetry;
  private readonly resolve: Resolve4 | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => () => void;
  /** Counts publishes, so that one whose DNS lookup ends after a later publish's does not overtake it. */
  private published = 0;

  constructor(
    configured: readonly string[],
    private readonly replicaToken: string,
    private readonly pushTimeoutMs: number,
    private readonly logger: Logger,
    private readonly options: ReplicaRegistryOptions = {},
  ) {
    this.retry = { ...NOTICE_RETRY, ...options.retry };
    this.resolve = options.resolve;
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? realTimer;
    for (const url of configured) this.entries.set(url, newEntry(url, 'config'));
  }

  /**
   * Looks up REPLICAS_DNS now and then every `dnsRefreshMs` (without it, no lookups), and forgets expired replicas
   * periodically (with `expiryMs`).
   */
  start(): void {
    if (this.closed) return;
    const expiryMs = this.options.expiryMs ?? 0;
    if (expiryMs > 0 && this.expiryTimer === undefined) {
      // Often enough that a dead replica goes within about 1.5 times its expiry.
      this.expiryTimer = setInterval(
        () => this.forgetExpired(),
        Math.max(100, Math.min(expiryMs / 2, 60_000)),
      );
      this.expiryTimer.unref();
    }
    if (this.options.dns == null || this.timer !== undefined) return;
    void this.refreshDns();
    this.timer = setInterval(() => void this.refreshDns(), this.options.dnsRefreshMs ?? DNS_REFRESH_MS);
    this.timer.unref();
  }

  /** Stops the DNS refresh, the expiry sweep and every pending retry (at shutdown). */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    if (this.expiryTimer !== undefined) clearInterval(this.expiryTimer);
    this.timer = undefined;
    this.expiryTimer = undefined;
    for (const e of this.entries.values()) stop(e.campaign, 'superseded');
  }

  /**
   * Replaces the replicas found behind REPLICAS_DNS with the current answer: new addresses are added, addresses
   * gone from DNS (pods that left) are forgotten, so that they neither get notices nor keep old versions from
   * being pruned. A lookup failure keeps the previous answer. Never throws.
   */
  async refreshDns(): Promise<void> {
    const target = this.options.dns;
    if (target == null) return;
    let urls: string[];
    try {
      urls = await resolveReplicaUrls(target, this.resolve);
    } catch (err) {
      this.logger.warn(
        { host: target.host, err: (err as Error).message },
        'REPLICAS_DNS lookup failed; keeping the replicas found before',
      );
      return;
    }
    const found = new Set(urls);
    for (const e of [...this.entries.values()]) {
      if (e.source === 'dns' && !found.has(e.url)) {
        stop(e.campaign, 'superseded');
        this.entries.delete(e.url);
        this.logger.info({ replica: e.url }, 'replica gone from REPLICAS_DNS; forgotten');
        if (e.version !== null) this.options.onServedChange?.();
      }
    }
    for (const url of urls) {
      const e = this.entries.get(url);
      if (e === undefined) {
        this.entries.set(url, newEntry(url, 'dns'));
        this.logger.info({ replica: url }, 'replica found behind REPLICAS_DNS');
      } else if (e.source === 'registered') {
        e.source = 'dns';
      }
    }
  }

  /**
   * Forgets every replica that registered by polling and has not been heard from for `expiryMs` (see the module
   * comment); the leader prunes then. Called periodically once started, and before each publish.
   */
  forgetExpired(): void {
    let moved = false;
    for (const e of [...this.entries.values()]) {
      if (!this.expired(e)) continue;
      stop(e.campaign, 'superseded');
      this.entries.delete(e.url);
      this.logger.info(
        { replica: e.url, version: e.version, lastContact: e.lastContact?.toISOString() ?? null },
        'replica not heard from for REPLICA_EXPIRY_MS; forgotten',
      );
      moved ||= e.version !== null;
    }
    if (moved) this.options.onServedChange?.();
  }

  /** A registered replica silent for longer than the expiry (never a configured or DNS one). */
  private expired(e: Entry): boolean {
    const expiryMs = this.options.expiryMs ?? 0;
    return (
      expiryMs > 0 &&
      e.source === 'registered' &&
      e.lastContact !== null &&
      this.now() - e.lastContact.getTime() > expiryMs
    );
  }

  /**
   * Records a replica's poll: it lives at `url`, serves `version` (null when it serves nothing yet), and says
   * `report` about its loads and its shard.
   */
  seen(url: string, version: number | null, report: PollReport | null = null): void {
    const e = this.entries.get(url) ?? newEntry(url, 'registered');
    const normal = shardText(report?.shard);
    const moved = e.version !== version || e.shard !== normal;
    e.version = version;
    e.shard = normal;
    e.lastContact = new Date(this.now());
    e.report = report;
    if (version !== null && version === e.failedVersion) {
      // It got there by itself (its own poll): the failure is over, and so are the retries.
      e.lastError = null;
      e.failedVersion = null;
    }
    if (version !== null && e.campaign?.version === version) stop(e.campaign, 'done');
    this.entries.set(url, e);
    if (moved) this.options.onServedChange?.();
  }

  /** Every known replica as GET /replicas shows it, lag counted against `currentVersion`. */
  list(currentVersion: number | undefined): ReplicaStatus[] {
    return [...this.entries.values()].map((e) => ({
      url: e.url,
      source: e.source,
      version: e.version,
      shard: e.shard,
      lastContact: e.lastContact?.toISOString() ?? null,
      stale: this.stale(e),
      lastError: e.lastError ?? reportedError(e.report),
      wantedVersion: e.report?.wantedVersion ?? null,
      behind:
        e.report?.wantedVersion != null &&
        e.report.wantedVersion !== e.version &&
        e.report.error?.version === e.report.wantedVersion,
      lag: lagOf(e.version, currentVersion),
      notice:
        e.campaign === undefined
          ? null
          : {
              version: e.campaign.version,
              state: e.campaign.state,
              attempts: e.campaign.attempts,
              nextAttemptAt: e.campaign.nextAttemptAt?.toISOString() ?? null,
            },
    }));
  }

  /** Never heard from, or silent for STALE_SYNC_INTERVALS of its sync intervals (the default one when unknown). */
  private stale(e: Entry): boolean {
    if (e.lastContact === null) return true;
    const interval = e.report?.syncIntervalMs ?? DEFAULTS.syncIntervalMs;
    return this.now() - e.lastContact.getTime() > STALE_SYNC_INTERVALS * interval;
  }

  /** What each replica not expired serves, and of which shard (for the shard coverage, shard-coverage.ts). */
  served(): { readonly shard: string | null; readonly version: number | null }[] {
    return [...this.entries.values()]
      .filter((e) => !this.expired(e))
      .map((e) => ({ shard: e.shard, version: e.version }));
  }

  /**
   * Versions some replica still serves (kept when old versions are pruned): every shard's replicas count, so a
   * version goes only once no shard serves it; an expired replica keeps none.
   */
  versionsInUse(): Set<number> {
    return new Set(
      [...this.entries.values()]
        .filter((e) => !this.expired(e))
        .map((e) => e.version)
        .filter((v): v is number => v !== null),
    );
  }

  /**
   * Tells every known replica (after a fresh DNS lookup) that `manifest` is current, retrying failures as the
   * module comment says. Resolves when every replica has taken it, refused it, run out of attempts, or been
   * superseded by a later call; never rejects.
   */
  async notifyAll(manifest: SnapshotManifest): Promise<void> {
    if (this.closed) return;
    const seq = ++this.published;
    // Cancel older campaigns first, so that no retry of an older version lands while DNS answers.
    for (const e of this.entries.values()) stop(e.campaign, 'superseded');
    this.forgetExpired();
    await this.refreshDns();
    if (this.closed || seq !== this.published) return;
    await Promise.all([...this.entries.values()].map((e) => this.campaign(e, manifest)));
  }

  private async campaign(e: Entry, manifest: SnapshotManifest): Promise<void> {
    stop(e.campaign, 'superseded');
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
  private async send(e: Entry, manifest: SnapshotManifest, c: Campaign): Promise<Outcome> {
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

  private failed(e: Entry, manifest: SnapshotManifest, c: Campaign, why: string, message?: string): void {
    e.lastError = `version ${manifest.version}: ${why}`;
    e.failedVersion = manifest.version;
    this.logger.warn(
      { replica: e.url, version: manifest.version, attempt: c.attempts, err: why, message },
      'replica notice failed',
    );
  }
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

function newEntry(url: string, source: Source): Entry {
  return {
    url,
    source,
    version: null,
    shard: null,
    lastContact: null,
    lastError: null,
    failedVersion: null,
    report: null,
    campaign: undefined,
  };
}

/** The failure a replica's poll reported, in lastError's form; built from the parsed numbers and code only. */
function reportedError(report: PollReport | null): string | null {
  const e = report?.error;
  return e == null ? null : `version ${e.version}: ${e.status} ${e.code} (reported by its poll)`;
}

/** Ends a campaign still running, as `state`: aborts its request in flight and its wait; its promise resolves. */
function stop(c: Campaign | undefined, state: 'done' | 'superseded'): void {
  if (c === undefined || c.state === 'done' || c.state === 'failed' || c.state === 'superseded') return;
  c.state = state;
  c.abort.abort();
  c.wake();
}

function lagOf(version: number | null, current: number | undefined): number | null {
  if (version === null || current === undefined) return null;
  // After a rollback the current version has the lower number: a replica still on the newer one is behind too.
  return version === current ? 0 : Math.max(1, current - version);
}

/** A replica's word for its shard, normalised to `k/S`; null for none, 1 shard, or a malformed one. */
function shardText(text: string | null | undefined): string | null {
  if (text == null || text === '') return null;
  const shard = parseShard(text);
  return typeof shard === 'string' || shard.count === 1 ? null : formatShard(shard);
}
