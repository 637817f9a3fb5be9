/**
 * Preloaded into a benchmarked process (`node --import tsx --import scripts/bench/eld-probe.ts ...`): measures
 * its event-loop delay with perf_hooks.monitorEventLoopDelay and prints one JSON line on stdout every
 * PROBE_INTERVAL_MS, `{"msg":"event-loop-delay","t":<ms since epoch>,"maxMs":...,"p99Ms":...}`, then starts a new
 * window. The histogram records the gap between ticks of a RESOLUTION_MS timer, so the delay is that gap less
 * RESOLUTION_MS. The product code is not touched: the benchmark sees the replica's own event loop from outside.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

const RESOLUTION_MS = 10;
const PROBE_INTERVAL_MS = 250;

const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
histogram.enable();
const delay = (ns: number) => Math.max(0, Math.round((ns / 1e6 - RESOLUTION_MS) * 100) / 100);

setInterval(() => {
  if (histogram.count === 0) return;
  const line = {
    msg: 'event-loop-delay',
    t: Date.now(),
    maxMs: delay(histogram.max),
    p99Ms: delay(histogram.percentile(99)),
  };
  histogram.reset();
  process.stdout.write(`${JSON.stringify(line)}\n`);
}, PROBE_INTERVAL_MS).unref();
