/**
 * The one polling helper of the tests, for what has no event to wait on: polls `check` (sync or async)
 * every `intervalMs` until it returns something truthy, and returns that; fails after `ms` (a hang
 * guard, not a speed check) with the last error seen and, when given, `context()` (a process's output).
 * Each check is a request or two to a broker on loopback: polling often costs little, while each poll
 * interval is added to every wait. A check that starts a process should pass a longer `intervalMs`.
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 60_000,
  intervalMs = 50,
  context?: () => string,
): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      const detail = `${last ? `: ${String(last)}` : ''}${context ? `; output:\n${context().slice(-2000)}` : ''}`;
      throw new Error(`timed out waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
