import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { ClassifyReply } from '../shared/messages.ts';
import { SCREENSHOTS, launchBrowser, openPage, type Browser } from './helpers/browser.ts';
import { WorkerConnection } from '../shared/worker-connection.ts';
import { TEST_HEARTBEAT_MS, nextWorker, spawnWorker, type CliProcess } from './helpers/cluster.ts';
import { squeezenetRepository, startWebCluster, testLogger, type WebCluster } from './fixtures/webapp-cluster.ts';

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

  it('stays paged with 200 more workers and 500 more services, updating rows in place', async () => {
    const kept: WorkerConnection[] = [];
    try {
      const connect = (services: string[]) => {
        const connection = new WorkerConnection(services, async () => [], { connect: cluster.broker.backendEndpoint, heartbeatIntervalMs: TEST_HEARTBEAT_MS, kind: 'bulk' }, testLogger);
        kept.push(connection);
        connection.start();
      };
      const manyServices = Array.from({ length: 500 }, (_, i) => `bulk.service-${String(i).padStart(3, '0')}`);
      const last = nextWorker(cluster.broker, (w) => w.services.includes('bulk.worker-199'));
      connect(manyServices);
      for (let i = 0; i < 200; i++) connect([`bulk.worker-${i}`]);
      await last;
      await page.waitForFunction(() => /^\(7\d\d\)$/.test(document.getElementById('services-count')!.textContent ?? ''));
      await page.waitForFunction(() => /^\(20\d on /.test(document.getElementById('workers-count')!.textContent ?? ''));
      assert.equal(await page.locator('#services tbody tr').count(), 50, 'one page of services in the DOM');
      assert.ok((await page.locator('#workers tbody tr[data-worker]').count()) <= 50, 'one page of workers in the DOM');
      assert.match((await page.textContent('#services-page')) ?? '', /page 1 of 1[56]/);
      // Mark the rows, wait for two more snapshots: the same elements are still there (text changed in place).
      await page.evaluate(() => document.querySelectorAll('#services tbody tr').forEach((tr) => ((tr as HTMLElement).dataset.mark = 'kept')));
      const at = await page.evaluate(() => document.getElementById('total-answered')!.textContent);
      await page.evaluate(() => new Promise<void>((resolve) => {
        let seen = 0;
        const source = new EventSource('/cluster/events');
        source.addEventListener('snapshot', () => {
          if (++seen === 3) {
            source.close();
            resolve();
          }
        });
      }));
      assert.equal(await page.locator('#services tbody tr[data-mark="kept"]').count(), 50, `rows kept across updates (answered was ${at})`);
      await page.fill('#services-filter', 'bulk.service-42');
      await page.waitForFunction(() => document.querySelectorAll('#services tbody tr').length === 10);
      await page.click('#services tbody tr[data-service="bulk.service-420"]');
      await page.waitForFunction(() => document.getElementById('chart-of')!.textContent === 'bulk.service-420');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no sideways scrolling of the page (overflow ${overflow}px)`);
      await page.screenshot({ path: join(SCREENSHOTS, 'cluster-many-workers.png'), fullPage: false });
    } finally {
      await Promise.all(kept.map((c) => c.close()));
    }
  });
});
