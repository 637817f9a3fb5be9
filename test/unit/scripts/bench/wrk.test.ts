import { expect } from 'chai';
import { medianRun, type WrkRun } from '../../../../scripts/bench/wrk.js';

function run(requestsPerS: number, p99: number, cpu: number): WrkRun {
  return {
    target: 'replica',
    requests: requestsPerS * 10,
    durationS: 10,
    requestsPerS,
    non2xx: 0,
    socketErrors: 0,
    latencyUs: { p50: p99 / 2, p90: p99 - 1, p99, p999: p99 + 1, max: p99 * 2, mean: p99 / 3 },
    serverCpuUsPerRequest: cpu,
    serverCoreShare: 1,
  };
}

describe('scripts/bench/wrk: medianRun', () => {
  it('takes each figure the median over the runs, not the figures of one lucky run', () => {
    const m = medianRun([run(100, 900, 30), run(300, 100, 10), run(200, 500, 20)]);
    expect(m.requestsPerS).to.equal(200);
    expect(m.latencyUs.p99).to.equal(500);
    expect(m.latencyUs.max).to.equal(1000);
    expect(m.serverCpuUsPerRequest).to.equal(20);
    expect(m.target).to.equal('replica');
    // An even count: the mean of the two middle values.
    expect(medianRun([run(100, 900, 30), run(300, 100, 10)]).requestsPerS).to.equal(200);
  });

  it('keeps the fields a benchmark adds to its runs', () => {
    const runs = [1, 3, 2].map((hits) => ({ ...run(hits, hits, hits), cacheHitRatio: hits / 10 }));
    expect(medianRun(runs).cacheHitRatio).to.equal(0.2);
  });
});
