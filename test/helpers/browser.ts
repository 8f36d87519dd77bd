/**
 * A real browser for page tests: Debian's chromium (scripts/ensure-chromium.sh installs it)
 * driven by playwright-core, one persistent context per suite, and a check that a page loads
 * nothing from anywhere but the web app (no CDN).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from './cluster.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Screenshots land here (git-ignored). */
export const SCREENSHOTS = join(REPO_ROOT, 'test-output');

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Starting chromium per test would double a suite's time: start one per suite. */
export async function launchBrowser(viewport: { width: number; height: number }, timezoneId?: string): Promise<Browser> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'zerve-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport, ...(timezoneId ? { timezoneId } : {}) }).catch((err: unknown) => {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  });
  let closed: Promise<void> | undefined;
  return {
    context,
    close: () => (closed ??= context.close().finally(() => rmSync(profile, { recursive: true, force: true }))),
  };
}

/** Opens `url` in a new page and waits for `body[data-ready]`; `foreign` collects requests to other origins. */
export async function openPage(browser: Browser, origin: string, url: string): Promise<{ page: Page; foreign: string[] }> {
  const page = await browser.context.newPage();
  const foreign: string[] = [];
  page.on('request', (request) => {
    const requested = request.url();
    if (!requested.startsWith(origin) && !requested.startsWith('blob:') && !requested.startsWith('data:')) foreign.push(requested);
  });
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]');
  return { page, foreign };
}
