/**
 * The replicas the leader knows (configured in REPLICAS, or registered by their own polls), what each serves, and
 * the notices that tell them a new version is current.
 *
 * Concurrency: called from the leader's request handlers and ingest; state changes are synchronous, notices run
 * concurrently and only record their outcome.
 */
import type { Logger } from '../common/logger.js';
import type { SnapshotManifest } from '../common/protocol.js';

export interface ReplicaStatus {
  readonly url: string;
  /** How the leader learned of it: the REPLICAS setting, or the replica's own poll. */
  readonly source: 'config' | 'registered';
  /** The version the replica last said it serves; null before it said anything. */
  readonly version: number | null;
  readonly lastContact: string | null;
  /** Why the last notice failed, if it did. */
  readonly lastError: string | null;
  /** Versions behind the current one; null when its version is unknown. */
  readonly lag: number | null;
}

interface Entry {
  url: string;
  source: 'config' | 'registered';
  version: number | null;
  lastContact: Date | null;
  lastError: string | null;
}

export class ReplicaRegistry {
  private readonly entries = new Map<string, Entry>();

  constructor(
    configured: readonly string[],
    private readonly replicaToken: string,
    private readonly pushTimeoutMs: number,
    private readonly logger: Logger,
  ) {
    for (const url of configured) {
      this.entries.set(url, { url, source: 'config', version: null, lastContact: null, lastError: null });
    }
  }

  /** Records a replica's poll: it lives at `url` and serves `version` (null when it serves nothing yet). */
  seen(url: string, version: number | null): void {
    const e = this.entries.get(url) ?? {
      url,
      source: 'registered' as const,
      version: null,
      lastContact: null,
      lastError: null,
    };
    e.version = version;
    e.lastContact = new Date();
    this.entries.set(url, e);
  }

  list(currentVersion: number | undefined): ReplicaStatus[] {
    return [...this.entries.values()].map((e) => ({
      url: e.url,
      source: e.source,
      version: e.version,
      lastContact: e.lastContact?.toISOString() ?? null,
      lastError: e.lastError,
      lag:
        e.version === null || currentVersion === undefined ? null : Math.max(0, currentVersion - e.version),
    }));
  }

  /** Versions some replica still serves (kept when old versions are pruned). */
  versionsInUse(): Set<number> {
    return new Set([...this.entries.values()].map((e) => e.version).filter((v): v is number => v !== null));
  }

  /** Tells every known replica that `manifest` is current; resolves when all have answered or timed out. */
  async notifyAll(manifest: SnapshotManifest): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => this.notify(e, manifest)));
  }

  private async notify(e: Entry, manifest: SnapshotManifest): Promise<void> {
    try {
      const res = await fetch(`${e.url}/internal/snapshots`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.replicaToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(manifest),
        signal: AbortSignal.timeout(this.pushTimeoutMs),
      });
      const body = (await res.json().catch(() => ({}))) as {
        version?: number;
        error?: string;
        message?: string;
      };
      e.lastContact = new Date();
      if (!res.ok) throw new Error(`${res.status} ${body.error ?? ''} ${body.message ?? ''}`.trim());
      e.version = typeof body.version === 'number' ? body.version : e.version;
      e.lastError = null;
      this.logger.info({ replica: e.url, version: e.version }, 'replica took the new version');
    } catch (err) {
      e.lastError = (err as Error).message;
      this.logger.warn(
        { replica: e.url, version: manifest.version, err: e.lastError },
        'replica notice failed',
      );
    }
  }
}
