/**
 * Polls `check` every 50 ms until it returns something truthy, or fails after `ms` with the last error
 * seen. Each check is a request or two to a broker on loopback: polling often costs little, while each
 * poll interval is added to every wait (20 of them in the models tests). A check that starts a process
 * should pass a longer `intervalMs`.
 */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, ms = 60_000, intervalMs = 50): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
