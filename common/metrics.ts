/**
 * Prometheus metrics both roles share (prom-client): one registry per process with the default process metrics,
 * HTTP request counts, durations, in-flight and shed requests, and the `/metrics` route.
 *
 * The read path records through pre-bound label children (a few tens of nanoseconds each), so metrics cost the hot
 * path almost nothing. Names follow Prometheus conventions: base units, `_total` for counters, `_seconds`.
 */
import type Koa from 'koa';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export const METRIC_PREFIX = 'promotions_';
/** Request duration buckets, in seconds: sub-millisecond reads up to slow uploads. */
const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30,
];

export interface HttpMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly inFlight: Gauge;
  readonly shed: Counter;
}

/** A registry with default process metrics (memory, CPU, event-loop lag, GC) and the HTTP metrics. */
export function createHttpMetrics(role: 'leader' | 'replica'): HttpMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ role });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: `${METRIC_PREFIX}http_requests_total`,
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: `${METRIC_PREFIX}http_request_duration_seconds`,
      help: 'Time from a request arriving to its answer being handed to the socket, by route',
      labelNames: ['route'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: `${METRIC_PREFIX}http_requests_in_flight`,
      help: 'Requests being answered now (reads include those waiting in the overload queue)',
      registers: [registry],
    }),
    shed: new Counter({
      name: `${METRIC_PREFIX}http_requests_shed_total`,
      help: 'Reads refused with 503 because the replica was over its in-flight and queue limits',
      registers: [registry],
    }),
  };
}

/** Counts and times every request that Koa answers, labelled by the matched route (not the raw path). */
export function metricsMiddleware(m: HttpMetrics): Koa.Middleware {
  return async (ctx, next) => {
    const start = performance.now();
    m.inFlight.inc();
    try {
      await next();
    } finally {
      m.inFlight.dec();
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      m.requests.labels(route, ctx.method, String(ctx.status)).inc();
      m.duration.labels(route).observe((performance.now() - start) / 1000);
    }
  };
}

/** `GET /metrics` in the Prometheus text format. */
export function metricsRoute(registry: Registry): Koa.Middleware {
  return async (ctx) => {
    ctx.type = registry.contentType;
    ctx.body = await registry.metrics();
  };
}
