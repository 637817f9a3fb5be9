/**
 * Talking to a cluster through the operator's own `kubectl` (scripts/bluegreen.ts): a runner that resolves stdout
 * or fails with kubectl's message, and a JSON reader that names what it was reading.
 */
import { execFile } from 'node:child_process';

/** A refusal or failure with a message for the operator (scripts exit 1 with it). */
export class Refused extends Error {}

/** Runs kubectl with `args`; resolves its stdout, or throws Refused with its stderr. */
export type Kubectl = (args: readonly string[]) => Promise<string>;

/** The kubectl on PATH, or the binary named by the KUBECTL environment variable. */
export function systemKubectl(binary = process.env.KUBECTL || 'kubectl'): Kubectl {
  return (args) =>
    new Promise((resolve, reject) => {
      execFile(binary, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          const why = stderr.trim() || err.message;
          reject(new Refused(`kubectl ${args.join(' ')} failed: ${why}`));
        } else {
          resolve(stdout);
        }
      });
    });
}

/** Parses kubectl's (or an API server proxy's) JSON answer; throws Refused naming `what` when it is not JSON. */
export function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Refused(`${what} is not JSON: ${text.slice(0, 200)}`);
  }
}
