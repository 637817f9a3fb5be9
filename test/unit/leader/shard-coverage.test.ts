import { expect } from 'chai';
import { shardCoverage } from '../../../leader/shard-coverage.js';

describe('leader/shard-coverage', () => {
  it('calls a version live only when every shard of a layout has a replica serving it', () => {
    const c = shardCoverage(
      [
        { shard: '0/4', version: 7 },
        { shard: '0/4', version: 6 },
        { shard: '1/4', version: 7 },
        { shard: '2/4', version: 6 },
        { shard: '2/4', version: 7 },
        { shard: '3/4', version: 6 },
        { shard: '3/4', version: null },
      ],
      7,
    );
    expect(c.currentLive).to.equal(false);
    expect(c.layouts).to.have.length(1);
    const [layout] = c.layouts;
    expect(layout).to.include({ shards: 4 });
    expect(layout.live).to.deep.equal([]);
    expect(layout.missingCurrent).to.deep.equal([3]);
    expect(layout.perShard).to.deep.equal([
      { index: 0, replicas: 2, versions: [7, 6] },
      { index: 1, replicas: 1, versions: [7] },
      { index: 2, replicas: 2, versions: [7, 6] },
      { index: 3, replicas: 2, versions: [6] },
    ]);
    const after = shardCoverage(
      [{ shard: '3/4', version: 7 }, ...[0, 1, 2].map((k) => ({ shard: `${k}/4`, version: 7 }))],
      7,
    );
    expect(after.currentLive).to.equal(true);
    expect(after.layouts[0].live).to.deep.equal([7]);
  });

  it('counts a shard with no replica as missing, and two layouts (a reshard) apart', () => {
    const c = shardCoverage(
      [
        { shard: null, version: 3 },
        { shard: '0/2', version: 4 },
      ],
      4,
    );
    expect(c.layouts.map((l) => [l.shards, l.live, l.missingCurrent])).to.deep.equal([
      [1, [3], [0]],
      [2, [], [1]],
    ]);
    expect(c.currentLive).to.equal(false);
    expect(shardCoverage([], undefined)).to.deep.equal({ currentLive: false, layouts: [] });
  });
});
