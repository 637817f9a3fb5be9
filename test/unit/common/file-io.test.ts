import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { readFully, writeFully } from '../../../common/file-io.js';
import { cleanup, tempDir } from '../../helpers.js';

describe('common/file-io', () => {
  afterEach(cleanup);

  it('writes at a position, or at the end of a file opened for appending', async () => {
    const path = join(await tempDir(), 'f');
    const h = await open(path, 'w');
    await writeFully(h, Buffer.from('hello world'), 0);
    await writeFully(h, Buffer.from('W'), 6);
    await h.close();
    const a = await open(path, 'a');
    await writeFully(a, Buffer.from('!'), null);
    await a.close();
    expect(await readFile(path, 'latin1')).to.equal('hello World!');
  });

  it('fills a buffer larger than one read, and says how much there was when the file ends first', async () => {
    const path = join(await tempDir(), 'f');
    const data = Buffer.alloc(9 * 1024 * 1024 + 5);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const h = await open(path, 'w+');
    await writeFully(h, data, 0);
    const whole = Buffer.alloc(data.length - 7);
    expect(await readFully(h, whole, 7)).to.equal(whole.length);
    expect(whole.equals(data.subarray(7))).to.equal(true);
    const past = Buffer.alloc(100);
    expect(await readFully(h, past, data.length - 40)).to.equal(40);
    expect(await readFully(h, past, data.length + 1)).to.equal(0);
    await h.close();
  });
});
