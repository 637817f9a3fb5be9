/**
 * The baseline of the GET benchmark (docs/design.md §6): a bare `node:http` server answering every request with one fixed
 * JSON body and the two headers a JSON answer needs (content-type, content-length). No routing, no lookup.
 *   node --import tsx scripts/bench/bare-server.ts [--port 0] [--host 127.0.0.1] [--body '{"id":...}']
 * Prints `{"msg":"listening","port":...,"url":...}` once it listens, as the leader and replica do; exits on
 * SIGTERM or SIGINT.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { headerUsage, parseCommandLine } from '../lib/cli.js';

/** A real answer's shape and size (docs/design.md §2); get.ts passes a real answer from the replica with --body. */
const DEFAULT_BODY =
  '{"id":"d018ef0b-dbd9-48f1-ac1a-eb4d90e57118","price":60.683466,"expiration_date":"2018-08-04 05:32:31"}';

const { values } = parseCommandLine(
  {
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      body: { type: 'string', default: DEFAULT_BODY },
    },
  },
  headerUsage(import.meta.url),
);
const body = values.body;
const length = Buffer.byteLength(body);

const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
  res.end(body);
});

server.listen(Number(values.port), values.host, () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(
    `${JSON.stringify({ msg: 'listening', port, url: `http://${values.host}:${port}`, bodyBytes: length })}\n`,
  );
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
