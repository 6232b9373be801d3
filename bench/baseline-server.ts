import http from 'node:http';
import Fastify from 'fastify';

/**
 * The baseline: a bare node:http server that reads the body and answers 200.
 * BASELINE_HTTP=fastify: the same behind a fastify 5 route (body read as a buffer, no parse), which
 * prices the framework the issues prescribe.
 * Prints `LISTENING <port>` when ready.
 */
const ANSWER = '{"message":"thank you"}';

if (process.env.BASELINE_HTTP === 'fastify') {
  const app = Fastify({ logger: false, bodyLimit: 10 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.post('/hook/:flowId', async (_request, reply) => reply.type('application/json').send(ANSWER));
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`LISTENING ${new URL(address).port}\n`);
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
} else {
  const server = http.createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(ANSWER);
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    if (addr && typeof addr === 'object') process.stdout.write(`LISTENING ${addr.port}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
