import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { ClassifyReply } from '../shared/messages.ts';
import { SCREENSHOTS, launchBrowser, openPage, type Browser } from './helpers/browser.ts';
import { spawnWorker, type CliProcess } from './helpers/cluster.ts';
import { squeezenetRepository, startWebCluster, type WebCluster } from './fixtures/webapp-cluster.ts';

/** Not the machine's zone (UTC here), so the page shows it took the browser's. */
const BROWSER_TIME_ZONE = 'Europe/Berlin';

describe('cluster page in a browser', function () {
  this.timeout(120_000);
  let cluster: WebCluster;
  let browser: Browser;
  let page: Page;
  let foreignRequests: string[];
  let added: CliProcess | undefined;

  // One cluster and one browser for the suite: the tests follow one story (load, kill, add).
  before(async () => {
    cluster = await startWebCluster({ clusterPollMs: 250 });
    browser = await launchBrowser({ width: 1400, height: 1100 }, BROWSER_TIME_ZONE);
  });
  after(async () => {
    await browser?.close();
    await added?.kill();
    await cluster?.close();
  });
  beforeEach(async () => {
    ({ page, foreign: foreignRequests } = await openPage(browser, cluster.url, new URL('/cluster', cluster.url).href));
  });
  afterEach(async () => {
    await page.close();
    assert.deepEqual(foreignRequests, [], 'the page loads nothing from elsewhere: uPlot comes from the web app');
  });

  const number = async (selector: string) => Number(((await page.textContent(selector)) ?? '').replace(/[^\d.]/g, ''));
  const workerRow = (pid: number) => `#workers tr[data-pid="${pid}"]`;

  it('moves requests/s and the counts as 100 images are classified, charted in the browser time zone', async () => {
    await page.waitForSelector(workerRow(cluster.inference.pid));
    assert.equal(await page.textContent('#zone'), BROWSER_TIME_ZONE);
    assert.equal(await page.locator('#chart-rps canvas').count(), 1, 'uPlot drew the requests chart');
    const before = await number('#total-answered');
    const url = new URL('/api/classify?model=squeezenet&sample=kitten.png&cache=false', cluster.url);
    for (let batch = 0; batch < 10; batch++) {
      const replies = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const response = await fetch(url, { method: 'POST' });
          assert.equal(response.status, 200);
          return (await response.json()) as ClassifyReply;
        }),
      );
      for (const reply of replies) assert.equal(reply.predictions[0]!.label, 'tabby, tabby cat');
    }
    await page.waitForFunction((least) => Number(document.getElementById('total-answered')!.textContent!.replace(/[^\d]/g, '')) >= least, before + 100);
    await page.waitForFunction(() => Number(document.getElementById('total-rps')!.textContent) > 0);
    const row = page.locator('#services tr[data-service="classify.squeezenet"]');
    assert.match((await row.textContent()) ?? '', /OK \d+/);
    assert.notEqual(await row.locator('td').nth(6).textContent(), '–', 'p50 is measured');
    await page.screenshot({ path: join(SCREENSHOTS, 'cluster-under-load.png'), fullPage: true });
  });

  it('drops a SIGKILLed worker and shows a new one as it registers', async () => {
    const victim = cluster.inference;
    await page.waitForSelector(workerRow(victim.pid));
    await victim.kill('SIGKILL');
    await page.waitForSelector(workerRow(victim.pid), { state: 'detached' });
    added = await spawnWorker(cluster.broker, ['inference', '--models', await squeezenetRepository(), '--threads', '1']);
    await page.waitForSelector(workerRow(added.pid));
    assert.match((await page.textContent(workerRow(added.pid))) ?? '', /squeezenet 1/);
    await page.screenshot({ path: join(SCREENSHOTS, 'cluster-worker-replaced.png'), fullPage: true });
  });
});
