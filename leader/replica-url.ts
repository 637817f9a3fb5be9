/**
 * Which replica addresses a poll may register. A replica tells the leader where to send notices (the
 * X-Replica-Url header of its poll); the leader then POSTs to that address with the replica token. Taken as
 * given, any holder of the token could make the leader send requests, with the token, to any URL it can reach
 * (server-side request forgery). So an address registers only when it is a bare origin, `http(s)://host:port`
 * without path, query, fragment or credentials, and its host is the poller's own IP address or one the operator
 * listed in REPLICA_URL_HOSTS (`*`: any host, for replicas behind address translation).
 *
 * Concurrency: pure functions.
 */

/** `scheme://host:port` with an optional final slash: nothing else may follow the port. */
const ORIGIN =
  /^(https?):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(\d{1,5})\/?$/;

/** An IPv4 address as node reports it on a dual-stack socket (`::ffff:10.0.0.7`) without the IPv6 prefix. */
function plainAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

/**
 * The registered form of `raw` (`scheme://host:port`, host lower-cased), or why it may not register.
 * `poller` is the poll's remote address; `allowedHosts` is REPLICA_URL_HOSTS.
 */
export function replicaUrlFromPoll(
  raw: string,
  poller: string | undefined,
  allowedHosts: readonly string[],
): { readonly url: string } | { readonly refused: string } {
  const m = ORIGIN.exec(raw);
  if (m === null) return { refused: 'not an http(s)://host:port address without path, query or credentials' };
  const port = Number(m[3]);
  let host: string;
  try {
    // The WHATWG parser checks the host (IPv6 syntax, labels) and gives its canonical form.
    host = new URL(`${m[1]}://${m[2]}:${port}`).hostname;
  } catch {
    return { refused: 'the host is not a valid name or address' };
  }
  if (port < 1 || port > 65535) return { refused: `port ${port} is outside 1-65535` };
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  const own = poller !== undefined && plainAddress(bare) === plainAddress(poller);
  if (!own && !allowedHosts.includes('*') && !allowedHosts.includes(bare)) {
    return {
      refused: `host ${bare} is neither the poller's own address (${poller ?? 'unknown'}) nor listed in REPLICA_URL_HOSTS`,
    };
  }
  return { url: `${m[1]}://${host}:${port}` };
}
