import { stat } from 'node:fs/promises';
import { expect } from 'chai';
import { Cleanup } from '../../../../scripts/lib/cleanup.js';

describe('scripts/lib/cleanup', () => {
  it('runs every task once, newest first, and reports a failed one without stopping the rest', async () => {
    const failures: string[] = [];
    const c = new Cleanup((err) => failures.push(err.message));
    const ran: string[] = [];
    c.add(async () => ran.push('first'));
    c.add(async () => {
      throw new Error('second failed');
    });
    c.add(async () => ran.push('third'));
    await c.run();
    expect(ran).to.deep.equal(['third', 'first']);
    expect(failures).to.deep.equal(['second failed']);
    await c.run();
    expect(ran).to.have.length(2);
  });

  it('removes the temp directories it made', async () => {
    const c = new Cleanup();
    const dir = await c.tempDir('promotions-cleanup-test-');
    expect((await stat(dir)).isDirectory()).to.equal(true);
    await c.run();
    const gone = await stat(dir).then(
      () => false,
      () => true,
    );
    expect(gone).to.equal(true);
  });
});
