/**
 * How both roles declare their own metrics: every name gets METRIC_PREFIX and goes into the role's registry. Most
 * are read when Prometheus scrapes (a gauge from a value, a counter from a running total the code keeps), so the
 * hot paths update nothing.
 *
 * Concurrency: declared once, at start; `read` and `total` run on the event loop at each scrape.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_PREFIX } from './metrics.js';

/** A gauge whose value is `read()` at each scrape. */
export function scrapedGauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name: `${METRIC_PREFIX}${name}`,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/**
 * A gauge with one label whose series are `read()` at each scrape: pairs of a label value and its number (a value
 * not returned disappears).
 */
export function scrapedGauges(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  read: () => Iterable<readonly [string, number]>,
): Gauge {
  return new Gauge({
    name: `${METRIC_PREFIX}${name}`,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of read()) this.set({ [label]: value }, n);
    },
  });
}

/** A counter that follows `total()`, a count that only grows, read at each scrape. */
export function scrapedCounter(registry: Registry, name: string, help: string, total: () => number): Counter {
  let reported = 0;
  return new Counter({
    name: `${METRIC_PREFIX}${name}`,
    help,
    registers: [registry],
    collect() {
      const now = total();
      this.inc(now - reported);
      reported = now;
    },
  });
}

/** A counter the code increments, with labels `labelNames`. */
export function counter<L extends string = never>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[] = [],
): Counter<L> {
  return new Counter({ name: `${METRIC_PREFIX}${name}`, help, labelNames, registers: [registry] });
}

/** A gauge the code sets. */
export function gauge(registry: Registry, name: string, help: string): Gauge {
  return new Gauge({ name: `${METRIC_PREFIX}${name}`, help, registers: [registry] });
}

/** A histogram the code observes, in seconds, with `buckets`. */
export function histogram(registry: Registry, name: string, help: string, buckets: number[]): Histogram {
  return new Histogram({ name: `${METRIC_PREFIX}${name}`, help, buckets, registers: [registry] });
}
