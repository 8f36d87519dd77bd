import * as zmq from 'zeromq';
import type { Logger } from './logger.ts';

/**
 * Reads a socket's monitor events (`zmq.Observer`) until the socket is closed.
 *
 * The observer is never closed from here: libzmq's monitor sends its last events (closed, monitor
 * stopped) with a blocking send from the context's reaper thread, and with the observer's end gone
 * that send never returns. The reaper then stops, and every socket closed afterwards in the same
 * context keeps its listeners bound (a broker restarted on its ports got EADDRINUSE). Closing the
 * socket stops the monitor, and zeromq.js closes the observer when it reads that last event.
 *
 * Returns a promise of the end of the events, or undefined when the socket cannot be watched.
 */
export function watchSocketEvents(socket: zmq.Socket, onEvent: (event: zmq.Event) => void, log: Logger): Promise<void> | undefined {
  let observer: zmq.Observer | undefined;
  // zeromq.js names a monitor after its object's address, which a monitor just freed may still hold
  // (EADDRINUSE): another object has another address.
  for (let attempt = 0; !observer && attempt < 3; attempt++) {
    try {
      observer = new zmq.Observer(socket);
    } catch (err) {
      log.debug({ err, attempt }, "cannot watch this socket's events yet");
    }
  }
  if (!observer) return undefined;
  const events = observer;
  return (async () => {
    try {
      // Reads to the end, even when the caller no longer cares: see above.
      for await (const event of events) onEvent(event);
    } catch (err) {
      log.debug({ err }, 'socket events ended');
    }
  })();
}
