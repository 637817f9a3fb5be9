/** Naming the likely cause of a file that is not CSV text, from its first bytes. */
import { expect } from 'chai';
import { notCsvReason, SNIFF_BYTES, sniffReady } from '../../../leader/file-sniff.js';

const ROW = 'd018ef0b-dbd9-48f1-ac1a-eb4d90e57118,60.683466,2018-08-04 05:32:31 +0200 CEST';

describe('leader/file-sniff', () => {
  it('names each compressed format a partner might send, by its magic number', () => {
    const cases: [number[], string][] = [
      [[0x1f, 0x8b, 0x08], 'gzip'],
      [[0x50, 0x4b, 0x03, 0x04], 'ZIP'],
      [[0x42, 0x5a, 0x68, 0x39], 'bzip2'],
      [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
      [[0x28, 0xb5, 0x2f, 0xfd], 'zstd'],
    ];
    for (const [magic, name] of cases) {
      const file = Buffer.concat([Buffer.from(magic), Buffer.from(ROW)]);
      expect(notCsvReason(file), name).to.equal(
        `the file looks ${name}-compressed: send the CSV itself, uncompressed`,
      );
    }
  });

  it('tells UTF-16 (LE or BE, with or without a byte order mark) to send UTF-8', () => {
    const le = Buffer.from(`${ROW}\n`, 'utf16le');
    const be = Buffer.from(le).swap16();
    expect(notCsvReason(Buffer.concat([Buffer.from([0xff, 0xfe]), le]))).to.match(
      /^the file is UTF-16 \(it starts/,
    );
    expect(notCsvReason(Buffer.concat([Buffer.from([0xfe, 0xff]), be]))).to.match(
      /^the file is UTF-16 \(it starts/,
    );
    expect(notCsvReason(le)).to.equal(
      'the file looks UTF-16 (every other byte is zero): send UTF-8 or ASCII',
    );
    expect(notCsvReason(be)).to.equal(
      'the file looks UTF-16 (every other byte is zero): send UTF-8 or ASCII',
    );
  });

  it('says lines end with CR alone only when no LF comes in the first bytes', () => {
    const cr = Buffer.from(`${ROW}\r${ROW}\r`);
    expect(notCsvReason(cr)).to.equal(
      'lines end with CR alone (an old Mac format): save the file with LF or CRLF line ends',
    );
    // A CR inside a row of an LF file is that row's problem, reported on its line.
    expect(notCsvReason(Buffer.from(`a\rb,1,2018-08-04 05:32:31\n${ROW}\n`))).to.equal(undefined);
    expect(notCsvReason(Buffer.from(`${ROW}\r\n${ROW}\r\n`))).to.equal(undefined);
    expect(notCsvReason(Buffer.from(`${ROW}\r`))).to.equal(undefined);
  });

  it('calls mostly-control bytes binary, but not a NUL or two in text rows', () => {
    const random = Buffer.alloc(4096);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    expect(notCsvReason(random)).to.match(
      /^the file looks binary \(\d+% of its first 4096 bytes are control/,
    );
    expect(notCsvReason(Buffer.from(`${ROW}\nab\u0000c,1,2018-08-04 05:32:31\n`))).to.equal(undefined);
    expect(notCsvReason(Buffer.from(`${ROW}\n`))).to.equal(undefined);
    expect(notCsvReason(Buffer.alloc(0))).to.equal(undefined);
  });

  it('is ready to decide at the first line end, or after SNIFF_BYTES', () => {
    expect(sniffReady(Buffer.from(ROW))).to.equal(false);
    expect(sniffReady(Buffer.from(`${ROW}\n`))).to.equal(true);
    expect(sniffReady(Buffer.alloc(SNIFF_BYTES, 'x'))).to.equal(true);
  });
});
