/**
 * The time and the timers that the fast read path's timeouts run on (HEADERS_TIMEOUT_MS, KEEP_ALIVE_TIMEOUT_MS,
 * IDLE_TIMEOUT_MS in read-server.ts): the process's own by default, or a test's, so that a test moves time itself
 * and sees a timeout happen at the millisecond it is due, however slow the machine (as the leader's inbox and
 * replica registry take their clocks).
 *
 * Concurrency: everything runs on the event loop; timers call back on it.
 */

/** A timer that `cancel` stops; cancelling one that has already run does nothing. */
export interface ClockTimer {
  cancel(): void;
}

export interface ServerClock {
  /**
   * Milliseconds, always above zero (0 means "not set" to the fast path). Read once per connection event (bytes
   * in, a write drained, a late answer out): a plain function, so that reading it costs what Date.now does.
   */
  readonly now: () => number;
  /** Calls `fn` every `ms` until cancelled; the timer keeps no process alive. */
  every(ms: number, fn: () => void): ClockTimer;
  /** Calls `fn` once, `ms` from now, unless cancelled first; the timer keeps no process alive. */
  after(ms: number, fn: () => void): ClockTimer;
}

/** The process's clock (Date.now) and timers (setInterval, setTimeout), unref'd. */
export const systemClock: ServerClock = {
  now: Date.now,
  every(ms, fn) {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  },
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};
