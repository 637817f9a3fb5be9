/**
 * The replicas the leader knows (configured in REPLICAS, found behind REPLICAS_DNS, or registered by their own
 * polls), what each serves, and when one is forgotten. Publishing a version starts a notice campaign for each
 * (replica-notices.ts: retries, backoff, giving up), which records the replica's answers here.
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
 * synchronous; each replica has at most one notice campaign at a time (replica-notices.ts), which only records its
 * outcome.
 */
import { DEFAULTS } from '../common/config.js';
import type { Logger } from '../common/logger.js';
import type { ReplicaError, SnapshotManifest } from '../common/protocol.js';
import { type DnsTarget, type Resolve4, resolveReplicaUrls } from './replica-dns.js';
import {
  NoticeCampaigns,
  type NoticeRetry,
  type NoticeStatus,
  type NoticeTarget,
  noticeStatus,
  shardText,
  stopCampaign,
} from './replica-notices.js';

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
  /** Runs `fn` every `ms` (the DNS refresh) and returns what stops it; a fake in tests. */
  readonly setRepeat?: (fn: () => void, ms: number) => () => void;
}

/** setInterval that does not keep the process alive, and what stops it. */
function realRepeat(fn: () => void, ms: number): () => void {
  const timer = setInterval(fn, ms);
  timer.unref();
  return () => clearInterval(timer);
}

type Source = 'config' | 'dns' | 'registered';

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

interface Entry extends NoticeTarget {
  source: Source;
  /** What its last poll said (null before its first poll). */
  report: PollReport | null;
}

export class ReplicaRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly notices: NoticeCampaigns;
  private readonly resolve: Resolve4 | undefined;
  private stopDnsRefresh: (() => void) | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;
  /** Counts publishes, so that one whose DNS lookup ends after a later publish's does not overtake it. */
  private published = 0;

  constructor(
    configured: readonly string[],
    replicaToken: string,
    pushTimeoutMs: number,
    private readonly logger: Logger,
    private readonly options: ReplicaRegistryOptions = {},
  ) {
    this.resolve = options.resolve;
    this.now = options.now ?? Date.now;
    this.notices = new NoticeCampaigns({
      replicaToken,
      pushTimeoutMs,
      logger,
      retry: options.retry,
      now: this.now,
      setTimer: options.setTimer,
      onServedChange: options.onServedChange,
    });
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
    if (this.options.dns == null || this.stopDnsRefresh !== undefined) return;
    void this.refreshDns();
    this.stopDnsRefresh = (this.options.setRepeat ?? realRepeat)(
      () => void this.refreshDns(),
      this.options.dnsRefreshMs ?? DNS_REFRESH_MS,
    );
  }

  /** Stops the DNS refresh, the expiry sweep and every pending retry (at shutdown). */
  close(): void {
    this.closed = true;
    this.stopDnsRefresh?.();
    if (this.expiryTimer !== undefined) clearInterval(this.expiryTimer);
    this.stopDnsRefresh = undefined;
    this.expiryTimer = undefined;
    for (const e of this.entries.values()) stopCampaign(e.campaign, 'superseded');
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
        stopCampaign(e.campaign, 'superseded');
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
      stopCampaign(e.campaign, 'superseded');
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
    if (version !== null && e.campaign?.version === version) stopCampaign(e.campaign, 'done');
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
      notice: noticeStatus(e.campaign),
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
   * Tells every known replica (after a fresh DNS lookup) that `manifest` is current, retrying failures as
   * replica-notices.ts says. Resolves when every replica has taken it, refused it, run out of attempts, or been
   * superseded by a later call; never rejects.
   */
  async notifyAll(manifest: SnapshotManifest): Promise<void> {
    if (this.closed) return;
    const seq = ++this.published;
    // Cancel older campaigns first, so that no retry of an older version lands while DNS answers.
    for (const e of this.entries.values()) stopCampaign(e.campaign, 'superseded');
    this.forgetExpired();
    await this.refreshDns();
    if (this.closed || seq !== this.published) return;
    await Promise.all([...this.entries.values()].map((e) => this.notices.run(e, manifest)));
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

function lagOf(version: number | null, current: number | undefined): number | null {
  if (version === null || current === undefined) return null;
  // After a rollback the current version has the lower number: a replica still on the newer one is behind too.
  return version === current ? 0 : Math.max(1, current - version);
}
