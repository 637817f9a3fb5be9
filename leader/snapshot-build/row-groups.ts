/**
 * Grouping of encoded rows by the top bits of their first hash, so the builder routes a parsed block to spill runs
 * and partitions with one copy per group instead of one per row.
 *
 * Pure and synchronous; safe on any thread.
 */

/**
 * Rows of a block grouped by the top GROUP_BITS bits of h1 (the bits that pick spill runs and partitions), so the
 * builder routes a block with one copy per group instead of one per row.
 */
export const GROUP_BITS = 8;
const GROUPS = 2 ** GROUP_BITS;

/** Where each group of a grouped block starts: group g is bytes [bytes[g], bytes[g+1]), rows [rows[g], rows[g+1]). */
export interface RowGroups {
  readonly bytes: Uint32Array;
  readonly rows: Uint32Array;
}

/**
 * Copies the `count` whole rows of `src[0, end)`, which start at `starts[0..count)`, into a new buffer of their
 * exact size, grouped by the top GROUP_BITS bits of h1; input order is kept inside a group (last row wins).
 */
export function groupRows(
  src: Uint8Array,
  end: number,
  starts: Uint32Array,
  count: number,
): { rows: Buffer; groups: RowGroups } {
  const bytes = new Uint32Array(GROUPS + 1);
  const rows = new Uint32Array(GROUPS + 1);
  for (let i = 0; i < count; i++) {
    const off = starts[i];
    // h1 is little-endian at the row's start: its top byte is the group.
    const g = src[off + 3] >>> (8 - GROUP_BITS);
    bytes[g + 1] += (i + 1 < count ? starts[i + 1] : end) - off;
    rows[g + 1]++;
  }
  for (let g = 0; g < GROUPS; g++) {
    bytes[g + 1] += bytes[g];
    rows[g + 1] += rows[g];
  }
  // allocUnsafeSlow: its own ArrayBuffer, so it can be transferred between threads.
  const out = Buffer.allocUnsafeSlow(bytes[GROUPS]);
  const fill = bytes.slice(0, GROUPS);
  for (let i = 0; i < count; i++) {
    const off = starts[i];
    const stop = i + 1 < count ? starts[i + 1] : end;
    const g = src[off + 3] >>> (8 - GROUP_BITS);
    let at = fill[g];
    for (let k = off; k < stop; k++) out[at++] = src[k];
    fill[g] = at;
  }
  return { rows: out, groups: { bytes, rows } };
}
