/** The Lua scripts wrk runs for the read benchmarks. Pure. */

/** The WRK_JSON line every wrk script prints when wrk is done (read by the benchmarks' wrk runner). */
export const WRK_DONE = `
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
`;

/**
 * The wrk script: reads the ids file once per thread, pre-formats every request, and picks one at random per
 * request (a fixed seed, so every server sees the same sequence). `done` prints one line, `WRK_JSON {...}`, with
 * requests, duration_us, non2xx, socket_errors and latency percentiles in microseconds.
 */
export function wrkRandomIdsScript(idsPath: string): string {
  return `
local ids_path = ${JSON.stringify(idsPath)}
local reqs = {}
local n = 0

function init(args)
  for line in io.lines(ids_path) do
    n = n + 1
    reqs[n] = wrk.format("GET", "/promotions/" .. line)
  end
  math.randomseed(42)
end

function request()
  return reqs[math.random(n)]
end

${WRK_DONE}`;
}
