/**
 * A look at the first bytes of a file before it is parsed as CSV, to name the likely cause when it is not CSV text
 * at all: compressed, UTF-16, binary, or with lines that end with CR alone. Parsed as CSV such files give reasons
 * that point nowhere (a bad quote in gzip bytes, "not printable ASCII" for every UTF-16 character, one line of
 * 300,001 columns for CR-only line ends).
 *
 * Concurrency: pure functions.
 */

/** Bytes looked at, at most: the first line of a real file ends well before. */
export const SNIFF_BYTES = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;

/** Magic numbers of the compressed formats a partner might send by mistake. */
const COMPRESSED: readonly { readonly name: string; readonly magic: readonly number[] }[] = [
  { name: 'gzip', magic: [0x1f, 0x8b] },
  { name: 'ZIP', magic: [0x50, 0x4b, 0x03, 0x04] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68] },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
];

/** True once `head` is enough to decide: it holds a line end, or SNIFF_BYTES. */
export function sniffReady(head: Buffer): boolean {
  return head.length >= SNIFF_BYTES || head.indexOf(LF) !== -1;
}

/**
 * Why `head` (the first bytes of the file, after a UTF-8 BOM) cannot be CSV text, or undefined when it may be.
 * Call it once `sniffReady` says so, or at the end of the input.
 */
export function notCsvReason(head: Buffer): string | undefined {
  const start = head.subarray(0, SNIFF_BYTES);
  for (const { name, magic } of COMPRESSED) {
    if (start.length >= magic.length && magic.every((b, i) => start[i] === b)) {
      return `the file looks ${name}-compressed: send the CSV itself, uncompressed`;
    }
  }
  if ((start[0] === 0xff && start[1] === 0xfe) || (start[0] === 0xfe && start[1] === 0xff)) {
    return 'the file is UTF-16 (it starts with a UTF-16 byte order mark): send UTF-8 or ASCII';
  }
  if (looksUtf16(start)) return 'the file looks UTF-16 (every other byte is zero): send UTF-8 or ASCII';
  const control = controlBytes(start);
  if (start.length >= 16 && control * 10 > start.length) {
    return `the file looks binary (${Math.round((100 * control) / start.length)}% of its first ${start.length} bytes are control characters), not CSV text`;
  }
  // No LF in the whole head (a line of its own is far shorter), but a CR with more after it: CR-only line ends.
  const cr = start.indexOf(CR);
  if (cr !== -1 && cr + 1 < start.length && start.indexOf(LF) === -1) {
    return 'lines end with CR alone (an old Mac format): save the file with LF or CRLF line ends';
  }
  return undefined;
}

/** ASCII text in UTF-16: a zero byte in every other position (high bytes for LE, low for BE). */
function looksUtf16(b: Buffer): boolean {
  const pairs = Math.min(256, Math.floor(b.length / 2));
  if (pairs < 4) return false;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < pairs; i++) {
    if (b[2 * i] === 0) even++;
    if (b[2 * i + 1] === 0) odd++;
  }
  return Math.max(even, odd) * 10 >= pairs * 9 && Math.min(even, odd) * 10 < pairs;
}

/** Bytes that no text file holds: C0 controls other than tab, LF and CR, and DEL. */
function controlBytes(b: Buffer): number {
  let n = 0;
  for (const c of b) if ((c < 0x20 && c !== 0x09 && c !== LF && c !== CR) || c === 0x7f) n++;
  return n;
}
