/**
 * Command lines of the scripts: node:util `parseArgs` plus the two answers every script owes its user. `--help`
 * (or `-h`) prints the script's usage and exits 0; an unknown or malformed option prints what was wrong and the
 * usage to stderr and exits 2, instead of a stack trace (ERR_PARSE_ARGS_UNKNOWN_OPTION).
 *
 * Concurrency: called once, at the start of a script.
 */
import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';

type Parsed<C extends ParseArgsConfig> = ReturnType<typeof parseArgs<C>>;

/** Parses `process.argv` by `config`; answers --help with `usage` (the options, one a line, with defaults). */
export function parseCommandLine<C extends ParseArgsConfig>(config: C, usage: string): Parsed<C> {
  const withHelp = { ...config, options: { ...config.options, help: { type: 'boolean', short: 'h' } } } as C;
  let parsed: Parsed<C>;
  try {
    parsed = parseArgs(withHelp);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage.trim()}\n`);
    process.exit(2);
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    process.stdout.write(`${usage.trim()}\n`);
    process.exit(0);
  }
  return parsed;
}

/**
 * The usage of a script, from the comment it opens with (which says what it does, how to run it and its options):
 * one source for the reader of the code and the user of --help.
 */
export function headerUsage(moduleUrl: string): string {
  const src = readFileSync(new URL(moduleUrl), 'utf8');
  const start = src.indexOf('/**');
  const end = src.indexOf('*/', start);
  if (start === -1 || end === -1) return '';
  return src
    .slice(start + 3, end)
    .split('\n')
    .map((l) => l.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim();
}
