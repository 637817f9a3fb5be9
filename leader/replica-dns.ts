/**
 * Finds replicas behind a DNS name, as a Kubernetes headless Service gives them: one A record per ready pod
 * (REPLICAS_DNS, e.g. `replicas-headless.promotions.svc:8081`). Each address becomes `http://IP:PORT`.
 *
 * Concurrency: stateless; the registry calls it on each publish and periodically, and keeps the last good answer
 * when a lookup fails.
 */
import { resolve4 } from 'node:dns/promises';

/** Looks up the IPv4 addresses of a name; `dns.promises.resolve4` in production, a fake in tests. */
export type Resolve4 = (host: string) => Promise<string[]>;

/** A DNS name and the port every replica behind it listens on. */
export interface DnsTarget {
  readonly host: string;
  readonly port: number;
}

/** DNS answers that mean "no replica there now" rather than "DNS is broken": an empty Service is NXDOMAIN. */
const EMPTY_ANSWER_CODES = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * The base URLs of the replicas behind `target`, one `http://IP:PORT` per A record, sorted and without repeats;
 * an empty list when the name has no addresses now. Throws on any other DNS failure (timeout, refused, server
 * failure), so that the caller keeps what it knew instead of forgetting every replica.
 */
export async function resolveReplicaUrls(target: DnsTarget, resolve: Resolve4 = resolve4): Promise<string[]> {
  let addresses: string[];
  try {
    addresses = await resolve(target.host);
  } catch (err) {
    if (EMPTY_ANSWER_CODES.has((err as NodeJS.ErrnoException).code ?? '')) return [];
    throw err;
  }
  return [...new Set(addresses)].sort().map((ip) => `http://${ip}:${target.port}`);
}
