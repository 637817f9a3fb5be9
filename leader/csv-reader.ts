/**
 * Turns a stream of CSV bytes into rows of fields with their line numbers, through csv-parse (the reference
 * parser): RFC 4180 quoting, LF or CRLF line ends, an optional UTF-8 BOM. Blank lines carry no data and are skipped.
 * A malformed quote cannot be recovered from, so it ends the file as a bad row naming its line.
 */
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CsvError, parse } from 'csv-parse';

/** Receives each row; a returned promise is awaited before the next row (backpressure). */
export type RowSink = (fields: string[], line: number) => Promise<void> | undefined;

/** A CSV syntax error that stops parsing; `line` is where csv-parse found it. */
export class CsvSyntaxError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
    this.name = 'CsvSyntaxError';
  }
}

interface ParsedRecord {
  record: string[];
  info: { lines: number };
}

/**
 * Reads every row of `source` into `sink`; resolves when the input ends. `onBytes` sees every chunk first
 * (checksum, size limit); an error it throws ends the read with that error.
 */
export async function readCsv(
  source: Readable,
  sink: RowSink,
  onBytes: (chunk: Buffer) => void,
): Promise<void> {
  const parser = parse({
    bom: true,
    relax_column_count: true,
    info: true,
    record_delimiter: ['\r\n', '\n'],
  });
  let lastLine = 0;
  try {
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        try {
          onBytes(chunk);
          done(null, chunk);
        } catch (err) {
          done(err as Error);
        }
      },
    });
    await pipeline(source, meter, parser, async (records: AsyncIterable<ParsedRecord>) => {
      for await (const { record, info } of records) {
        const line = lastLine + 1;
        lastLine = info.lines;
        if (record.length === 1 && record[0] === '') continue;
        const wait = sink(record, line);
        if (wait !== undefined) await wait;
      }
    });
  } catch (err) {
    if (err instanceof CsvError) {
      throw new CsvSyntaxError(typeof err.lines === 'number' ? err.lines : lastLine + 1, err.message);
    }
    throw err;
  }
}
