import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/**
 * The process logger: JSON lines on stdout. Authorization headers and tokens are redacted wherever they appear,
 * so a logged request or config never leaks a secret.
 */
export function createLogger(level: string, name: string, destination?: DestinationStream): Logger {
  const options = {
    name,
    level,
    redact: {
      paths: ['req.headers.authorization', '*.leaderToken', '*.replicaToken', 'leaderToken', 'replicaToken'],
      censor: '[redacted]',
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
