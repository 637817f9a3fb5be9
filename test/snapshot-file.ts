/** Builds small snapshot files for tests from plain rows. */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { renderPromotion } from '../common/promotion-body.js';
import { isBadRow, type Promotion, parseFields } from '../common/record.js';
import type { SnapshotHeader } from '../common/snapshot/format.js';
import { encodeRow, MAX_ROW_BYTES } from '../leader/snapshot-build/row-encoding.js';
import { groupRows } from '../leader/snapshot-build/row-groups.js';
import { type BuildOptions, SnapshotBuilder } from '../leader/snapshot-build/snapshot-builder.js';

export type Row = readonly [id: string, price: string, date: string];

export function promotion(row: Row, line = 1): Promotion {
  const p = parseFields(row[0], row[1], row[2], line);
  if (isBadRow(p)) throw new Error(`test row is bad: ${p.reason}`);
  return p;
}

/**
 * Writes `rows` (in order, duplicates allowed) to `dir/name` and returns its header. `blockRows`: add them as the
 * parse workers do, in blocks of that many encoded rows grouped by hash (groupRows, addEncoded); else one by one.
 */
export async function buildFile(
  dir: string,
  rows: readonly Row[],
  options: Partial<BuildOptions> = {},
  name = 'test.snap',
  blockRows?: number,
): Promise<{ path: string; header: SnapshotHeader }> {
  const path = join(dir, name);
  const builder = new SnapshotBuilder({ path, tmpDir: dir, memoryBytes: 64 * 1024 * 1024, ...options });
  for (let i = 0; i < rows.length; ) {
    if (blockRows === undefined) {
      const wait = builder.add(promotion(rows[i], i + 1));
      if (wait !== undefined) await wait;
      i++;
      continue;
    }
    const n = Math.min(blockRows, rows.length - i);
    const buf = Buffer.alloc(n * MAX_ROW_BYTES);
    const starts = new Uint32Array(n);
    let pos = 0;
    for (let k = 0; k < n; k++) {
      starts[k] = pos;
      pos += encodeRow(promotion(rows[i + k], i + k + 1), buf, pos);
    }
    const grouped = groupRows(buf, pos, starts, n);
    const wait = builder.addEncoded(grouped.rows, n, grouped.groups);
    if (wait !== undefined) await wait;
    i += n;
  }
  const header = await builder.finish({ version: 3, sourceSha256: 'ab'.repeat(32), badRowCount: 0 });
  return { path, header };
}

/** The expected answer for each id: the last row with that id wins. */
export function expectedAnswers(rows: readonly Row[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const [id, price, date] of rows) {
    const p = promotion([id, price, date]);
    m.set(id, renderPromotion(p.id, p.price, p.expiresAt));
  }
  return m;
}

/** Deterministic rows: UUIDs, upper-case UUIDs, odd ids, and repeated ids with new values. */
export function mixedRows(n: number): Row[] {
  const rows: Row[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 5;
    const id =
      kind === 0
        ? `id-${i}`
        : kind === 1
          ? randomUUID().toUpperCase()
          : kind === 2
            ? `"q\\${i}`
            : randomUUID();
    rows.push([
      id,
      `${i}.${i % 7}0`,
      `2018-0${1 + (i % 9)}-1${i % 10} 0${i % 10}:1${i % 6}:0${i % 10} +0200 CEST`,
    ]);
  }
  for (let i = 0; i < n; i += 9) rows.push([rows[i][0], `99.${i}`, '2019-01-01 00:00:00 +0100 CET']);
  return rows;
}
