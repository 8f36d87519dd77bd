import * as zmq from 'zeromq';
import { ECHO_SERVICE, encodeClientRequest, parseClientReply } from '../../shared/protocol.ts';

/**
 * The client design ZerveClient replaced, kept as the benchmark's reference: a pool of DEALER sockets,
 * one request in flight per socket, no tag (a plain MDP/0.2 REQUEST; the reply is the socket's next
 * message). It does only what that design had to do per request (take a socket, send, receive, parse,
 * give the socket back), so its CPU per request is a lower bound for it.
 */
export class SocketPoolEcho {
  private readonly idle: zmq.Dealer[] = [];
  private readonly all: zmq.Dealer[] = [];
  private readonly request: Buffer[];

  constructor(
    private readonly endpoint: string,
    payloadBytes = 64,
  ) {
    this.request = encodeClientRequest(ECHO_SERVICE, [Buffer.alloc(payloadBytes, 0x61)]);
  }

  /** One echo round trip on a socket of the pool (a new one when none is idle). */
  async echo(): Promise<void> {
    const socket = this.idle.pop() ?? this.open();
    await socket.send(this.request);
    const reply = parseClientReply(await socket.receive());
    if (!reply.final || !reply.body[0]?.equals(this.request[3]!)) throw new Error('not an echo of the request');
    this.idle.push(socket);
  }

  close(): void {
    for (const socket of this.all) socket.close();
  }

  private open(): zmq.Dealer {
    const socket = new zmq.Dealer({ linger: 0 });
    socket.connect(this.endpoint);
    this.all.push(socket);
    return socket;
  }
}
