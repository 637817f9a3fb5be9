/**
 * Work to undo at the end (servers to stop, processes to end, temp directories to remove), run newest first so
 * that what was started last, and may depend on what came before, goes first. The tests, the benchmarks and the
 * dev cluster each keep one.
 *
 * Concurrency: `add` at any time; `run` takes what is registered when it starts, one task at a time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type CleanupTask = () => Promise<unknown>;

export class Cleanup {
  private readonly tasks: CleanupTask[] = [];

  /** `onError` hears of a task that failed; the others run anyway. */
  constructor(private readonly onError: (err: Error) => void = () => undefined) {}

  /** Registers `task`; returns it. */
  add<T extends CleanupTask>(task: T): T {
    this.tasks.push(task);
    return task;
  }

  /** A new directory under the system temp dir, removed by `run`. */
  async tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.add(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Runs every registered task, newest first, each once. */
  async run(): Promise<void> {
    while (this.tasks.length > 0) {
      const task = this.tasks.pop() as CleanupTask;
      await task().catch((err: Error) => this.onError(err));
    }
  }
}

/**
 * On the first SIGINT or SIGTERM, says so and runs `stop`, then exits 0; later signals are ignored while it runs.
 * The dev clusters (scripts/dev.ts, scripts/dev-sharded.ts) stop their processes this way on Ctrl-C.
 */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping...\n');
    void stop().then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
