import { createServer } from 'node:net';
import { expect } from 'chai';
import { errorText } from '../../../common/error-text.js';

describe('common/error-text', () => {
  it("names a fetch failure by its cause's code and message, not fetch's 'fetch failed'", async () => {
    // A port that was just free: nothing listens on it.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err = await fetch(`http://127.0.0.1:${port}/`).then(
      () => expect.fail('expected a refused connection'),
      (e: unknown) => e,
    );
    expect((err as Error).message).to.equal('fetch failed');
    expect(errorText(err)).to.equal(`ECONNREFUSED connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it("keeps an error's own message when it has no cause, and shows what is not an Error", () => {
    expect(errorText(new Error('the answer ended'))).to.equal('the answer ended');
    expect(errorText(new Error('outer', { cause: new Error('inner') }))).to.equal('inner');
    expect(errorText('plain')).to.equal('plain');
  });
});
