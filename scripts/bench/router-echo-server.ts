/**
 * The direct baseline of the broker benchmark, run as its own process: a ROUTER that sends every
 * message straight back to its sender, the simplest Node echo there is. Prints `listening <endpoint>`
 * on stdout, then serves until SIGTERM.
 */
import * as zmq from 'zeromq';

const router = new zmq.Router({ linger: 0, sendHighWaterMark: 100_000, receiveHighWaterMark: 100_000 });
await router.bind(process.argv[2] ?? 'tcp://127.0.0.1:*');
process.stdout.write(`listening ${router.lastEndpoint}\n`);
process.once('SIGTERM', () => router.close());
try {
  // One receive loop; each send is awaited before the next receive (zeromq 6 allows one pending send).
  for await (const message of router) await router.send(message);
} catch (err) {
  if (!router.closed) throw err;
}
