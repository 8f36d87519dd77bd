import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { SCREENSHOTS, launchBrowser, openPage, type Browser } from './helpers/browser.ts';
import { nextWorker } from './helpers/cluster.ts';
import { HALVES, halfPng, halvesZip, startTrainingCluster, type TrainingCluster } from './fixtures/webapp-training-cluster.ts';

const EPOCHS = 25;

interface ChartSnapshot {
  points: number;
  training: boolean;
  progress: string;
}

describe('web app training page in a browser', function () {
  this.timeout(120_000);
  let cluster: TrainingCluster;
  let browser: Browser;
  let page: Page;
  let foreignRequests: string[];

  // One cluster (training, jobs and inference workers) and one browser for the suite.
  before(async () => {
    cluster = await startTrainingCluster({ inference: true });
    browser = await launchBrowser({ width: 1200, height: 900 });
  });
  after(async () => {
    await browser?.close();
    await cluster?.close();
  });

  beforeEach(async () => {
    ({ page, foreign: foreignRequests } = await openPage(browser, cluster.url, new URL('/training.html', cluster.url).href));
  });
  afterEach(async () => {
    await page.close();
    assert.deepEqual(foreignRequests, [], 'the page loads nothing from elsewhere (no CDN)');
  });

  const texts = (selector: string) => page.locator(selector).allTextContents();

  it('uploads a zip, trains a grid of two runs with a live chart, compares them, shows the confusion matrix, and the model classifies', async () => {
    // 1. Upload: the manifest summary shows the classes, counts and skipped files.
    await page.setInputFiles('#archive', { name: 'halves.zip', mimeType: 'application/zip', buffer: await halvesZip() });
    await page.fill('#dataset-name', 'halves');
    await page.click('#upload');
    await page.waitForSelector('#manifest:not([hidden]), #upload-error:not([hidden])');
    assert.equal(await page.isVisible('#upload-error'), false, (await page.textContent('#upload-error')) ?? '');
    assert.deepEqual(await texts('#manifest-counts tbody th'), [...HALVES]);
    assert.deepEqual(await texts('#manifest-counts tbody td:nth-of-type(1)'), ['10', '10', '10', '10']);
    assert.equal(await page.textContent('#skipped-summary'), '2 files skipped');
    const skipped = (await texts('#skipped tbody tr')).join('\n');
    assert.match(skipped, /halves\/left\/notes\.txt\s*not an image/);
    assert.match(skipped, /halves\/\.DS_Store\s*a hidden file/);
    assert.equal(await page.inputValue('#dataset'), 'halves');
    assert.match((await page.locator('#dataset option').allTextContents()).join('|'), /mnist: 10 classes/);

    // 2. A grid of two runs, a few quick epochs each.
    await page.fill('#model-name', 'halves');
    await page.selectOption('#search-mode', 'grid');
    await page.fill('#search-params', 'hidden=16,32');
    await page.fill('#fixed-params', `patience=${EPOCHS}\nbatchSize=4`);
    await page.fill('#epochs', String(EPOCHS));
    // Record every redraw of the loss chart, and whether the training was still running then.
    await page.evaluate(() => {
      const chart = document.getElementById('loss-chart')!;
      const snapshots: ChartSnapshot[] = [];
      (window as unknown as { snapshots: ChartSnapshot[] }).snapshots = snapshots;
      new MutationObserver(() =>
        snapshots.push({
          points: Number(chart.dataset.points),
          training: !document.getElementById('cancel')!.hidden,
          progress: document.getElementById('progress')!.textContent ?? '',
        }),
      ).observe(chart, { attributes: true, attributeFilter: ['data-points'] });
    });
    const served = nextWorker(cluster.broker, (w) => w.services.includes('classify.halves'));
    await page.click('#start');
    await page.waitForSelector('#result:not([hidden]), #train-error:not([hidden])', { timeout: 60_000 });
    assert.equal(await page.isVisible('#train-error'), false, (await page.textContent('#train-error')) ?? '');

    // 3. The chart grew while the training ran: one line per run, plus the refit.
    const snapshots = await page.evaluate(() => (window as unknown as { snapshots: ChartSnapshot[] }).snapshots);
    const live = snapshots.filter((s) => s.training && s.points > 0);
    assert.ok(new Set(live.map((s) => s.points)).size >= 2, `the chart updated while training: ${JSON.stringify(snapshots.map((s) => [s.points, s.training]))}`);
    assert.ok(live.some((s) => /^Run [12] of 2: epoch \d+ of 25, loss \d\.\d{4}, validation accuracy \d+\.\d%\. .* so far, about .* left\.$/.test(s.progress)), JSON.stringify(live.map((s) => s.progress)));
    assert.equal(await page.getAttribute('#loss-chart', 'data-series'), '3', 'two runs and the refit');
    assert.equal(await page.getAttribute('#acc-chart', 'data-series'), '2');
    assert.equal(await page.locator('#loss-chart polyline').count(), 3);
    assert.equal(await page.locator('#legend li').count(), 3);
    const finalPoints = Number(await page.getAttribute('#loss-chart', 'data-points'));
    assert.ok(finalPoints > Math.max(...live.map((s) => s.points)) || finalPoints >= 2 * EPOCHS, `final ${finalPoints}`);
    const result = (await page.textContent('#result')) ?? '';
    assert.match(result, /Done in .*: 2 runs, best e[0-9a-f]{8}-[12] \(.*hidden=(16|32)/);
    assert.match(result, /Served as classify\.halves, version 1/);
    assert.match((await page.textContent('#progress')) ?? '', /^Finished: test accuracy (9\d|100)\.\d%, model halves version 1 is served\.$/);

    // 4. The runs list: the experiment with its two runs and the model produced.
    const experiment = page.locator('#runs tbody').first();
    const experimentId = (await experiment.getAttribute('data-experiment'))!;
    assert.match(experimentId, /^e[0-9a-f]{8}$/);
    await page.waitForFunction((id) => document.querySelectorAll(`#runs tbody[data-experiment="${id}"] tr[data-run]`).length === 2 && document.querySelector(`#runs tbody[data-experiment="${id}"] .badge.succeeded`) !== null, experimentId);
    const header = (await experiment.locator('tr').first().textContent()) ?? '';
    assert.match(header, new RegExp(`Experiment ${experimentId}succeeded.*dataset halves.*test accuracy .*model halves v1`));
    const rows = await experiment.locator('tr[data-run]').allTextContents();
    assert.match(rows[0]!, new RegExp(`${experimentId}-1.*succeeded.*hidden=16`));
    assert.match(rows[1]!, new RegExp(`${experimentId}-2.*succeeded.*hidden=32`));
    assert.match(rows.join('\n'), /\(best\).*halves v1/);

    // 5. Compare the two runs side by side: parameters, metrics and curves.
    await page.check(`input[aria-label="Compare run ${experimentId}-1"]`);
    await page.check(`input[aria-label="Compare run ${experimentId}-2"]`);
    await page.click('#compare');
    await page.waitForSelector('#compare-section:not([hidden])');
    assert.deepEqual(await texts('#compare-table thead th'), ['Run', `${experimentId}-1`, `${experimentId}-2`]);
    const hiddenRow = page.locator('#compare-table tbody tr', { has: page.locator('th', { hasText: /^hidden$/ }) });
    assert.deepEqual(await hiddenRow.locator('td').allTextContents(), ['16', '32']);
    const accuracyRow = page.locator('#compare-table tbody tr', { has: page.locator('th', { hasText: 'Validation accuracy' }) });
    for (const cell of await accuracyRow.locator('td').allTextContents()) assert.match(cell, /^\d+\.\d%$/);
    assert.equal(await page.getAttribute('#compare-loss-chart', 'data-series'), '2');
    assert.equal(await page.getAttribute('#compare-acc-chart', 'data-series'), '2');
    const legend = await texts('#compare-legend li');
    assert.equal(legend.length, 2);
    assert.match(legend[0]!, new RegExp(`^${experimentId}-1: .*hidden=16`));
    assert.match(legend[1]!, new RegExp(`^${experimentId}-2: .*hidden=32`));

    // 6. The confusion matrix heatmap of the experiment's test split, with class labels.
    await page.click(`button[data-confusion="${experimentId}"]`);
    await page.waitForSelector('#confusion-section:not([hidden])');
    assert.deepEqual(await texts('#confusion thead th.predicted'), [...HALVES]);
    assert.deepEqual(await texts('#confusion tbody th'), [...HALVES]);
    const matrix = await page.$$eval('#confusion tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => Number(td.textContent))));
    const total = matrix.flat().reduce((a, b) => a + b, 0);
    const correct = matrix.reduce((sum, row, i) => sum + row[i]!, 0);
    assert.ok(total >= 4 && correct / total >= 0.85, `confusion ${JSON.stringify(matrix)}`);
    const diagonal = page.locator('#confusion td.diagonal').first();
    assert.match((await diagonal.getAttribute('title')) ?? '', /^actual bottom, predicted bottom: \d+ \(\d+\.\d% of bottom\)$/);
    assert.notEqual(await diagonal.evaluate((td) => getComputedStyle(td).backgroundColor), 'rgba(0, 0, 0, 0)', 'cells are coloured');
    assert.match((await page.textContent('#confusion-summary')) ?? '', /accuracy (9\d|100)\.\d%/);
    assert.equal(await page.locator('#per-class tbody tr').count(), 4);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SCREENSHOTS, 'training-desktop.png'), fullPage: true });

    // 7. The new model is served (hot reload) and classifies on the main page.
    await served;
    await page.click('nav.pages a[href="/"]');
    await page.waitForSelector('body[data-ready="true"]');
    await page.selectOption('#model', 'halves');
    await page.setInputFiles('#file', { name: 'left.png', mimeType: 'image/png', buffer: await halfPng(4242, 'left') });
    await page.waitForFunction(() => /^Most likely: /.test(document.getElementById('status')?.textContent ?? ''));
    assert.equal((await texts('.prediction-label'))[0], 'left');
    assert.match((await page.textContent('#status')) ?? '', /by halves v1\.$/);
  });

  it('keeps a training request the server refuses on the page, in words', async () => {
    await page.selectOption('#search-mode', 'grid');
    await page.fill('#search-params', 'hidden=16:32');
    await page.fill('#model-name', 'never');
    await page.click('#start');
    await page.waitForSelector('#train-error:not([hidden])');
    assert.match((await page.textContent('#train-error')) ?? '', /^The request is not right\. \(.*grid search needs a list of values for hidden/);
    assert.equal(await page.isEnabled('#start'), true);
  });

  it('fits a phone screen, with a label for every control', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
    const unlabeled = await page.$$eval('input:not([type="checkbox"]), select, textarea', (controls) =>
      controls.filter((c) => !c.id || document.querySelector(`label[for="${c.id}"]`) === null).map((c) => c.outerHTML),
    );
    assert.deepEqual(unlabeled, []);
    const unnamedCheckboxes = await page.$$eval('input[type="checkbox"]', (boxes) => boxes.filter((b) => !b.getAttribute('aria-label')).length);
    assert.equal(unnamedCheckboxes, 0);
    await page.screenshot({ path: join(SCREENSHOTS, 'training-phone.png'), fullPage: true });
  });
});
