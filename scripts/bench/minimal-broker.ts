/**
 * The least a zeromq.js Majordomo broker can do: one ROUTER, MDP/0.1 requests forwarded to the
 * longest-idle worker, replies forwarded back, heartbeats sent, nothing checked, no queue bounds,
 * deadlines, metrics or logs. It shows the floor that zeromq.js itself sets under any broker written
 * on it, beside the C broker and Zerve's (`scripts/bench/broker-profile.ts`, BROKER=minimal).
 *
 *   npx tsx scripts/bench/minimal-broker.ts ENDPOINT
 */
import * as zmq from 'zeromq';

const endpoint = process.argv[2] ?? 'tcp://127.0.0.1:5555';
const socket = new zmq.Router({ linger: 0, sendTimeout: 0 });
await socket.bind(endpoint);
console.log(`minimal broker at ${endpoint}`);
const EMPTY = Buffer.alloc(0);
const MDPW01 = Buffer.from('MDPW01');
const MDPC01 = Buffer.from('MDPC01');
const REQUEST = Buffer.from([2]);
const HEARTBEAT = Buffer.from([4]);
// Only the echo service is served here.
const ECHO = Buffer.from('echo');
const idle: Buffer[] = [];
const workers = new Map<string, Buffer>();
const queue: Buffer[][] = [];

function dispatch(): void {
  while (idle.length > 0 && queue.length > 0) {
    const [client, , , , ...body] = queue.shift()!; // identity, empty, MDPC01, service, body
    socket.send([idle.shift()!, EMPTY, MDPW01, REQUEST, client!, EMPTY, ...body]);
  }
}

setInterval(() => {
  for (const worker of workers.values()) socket.send([worker, EMPTY, MDPW01, HEARTBEAT]);
}, 2500).unref();

for (;;) {
  const frames = await socket.receive();
  const header = frames[2]!;
  if (header.equals(MDPC01)) {
    // mmi.service (RFC 8) only, which the load generator asks before it starts.
    if (frames[3]!.toString() === 'mmi.service') socket.send([frames[0]!, EMPTY, MDPC01, frames[3]!, Buffer.from(workers.size > 0 ? '200' : '404')]);
    else queue.push(frames);
  } else if (header.equals(MDPW01)) {
    const identity = frames[0]!;
    const command = frames[3]![0];
    if (command === 1) workers.set(identity.toString('hex'), identity);
    if (command === 3) socket.send([frames[4]!, EMPTY, MDPC01, ECHO, ...frames.slice(6)]);
    if (command === 1 || command === 3) idle.push(identity);
  }
  dispatch();
}
