import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { SCREENSHOTS, launchBrowser, openPage, type Browser } from './helpers/browser.ts';
import { fixtureImage, fixtureModel } from './helpers/cluster.ts';
import { startWebCluster, type WebCluster } from './fixtures/webapp-cluster.ts';

describe('web app page in a browser', function () {
  this.timeout(60_000);
  let cluster: WebCluster;
  let browser: Browser;
  let page: Page;
  let foreignRequests: string[];

  // One cluster and one browser for the whole suite: starting Chromium per test would double its time.
  before(async () => {
    cluster = await startWebCluster();
    browser = await launchBrowser({ width: 1200, height: 820 });
  });
  after(async () => {
    await browser?.close();
    await cluster?.close();
  });

  beforeEach(async () => {
    ({ page, foreign: foreignRequests } = await openPage(browser, cluster.url, cluster.url));
  });
  afterEach(async () => {
    await page.close();
    assert.deepEqual(foreignRequests, [], 'the page loads nothing from elsewhere (no CDN)');
  });

  const answered = () =>
    page.waitForFunction(() => {
      const status = document.getElementById('status');
      return status !== null && !status.classList.contains('busy') && status.textContent !== 'Choose a photo to start.';
    });
  const labels = () => page.locator('.prediction-label').allTextContents();

  it('classifies an uploaded photo: kitten.png is a tabby', async () => {
    assert.equal(await page.inputValue('#model'), 'squeezenet');
    await page.setInputFiles('#file', fixtureImage('kitten.png'));
    await answered();
    const top = await labels();
    assert.equal(top[0], 'tabby, tabby cat');
    assert.equal(top.length, 5);
    assert.match((await page.textContent('#status')) ?? '', /tabby/);
    assert.equal(await page.isVisible('#error'), false);
    assert.ok((await page.locator('#timings dt').count()) >= 3, 'timings are shown');
    assert.match((await page.getAttribute('#preview', 'src')) ?? '', /^blob:/);
    await page.screenshot({ path: join(SCREENSHOTS, 'webapp-desktop.png'), fullPage: true });
  });

  it('classifies a sample picked from the gallery', async () => {
    await page.click('button[data-sample="fish.png"]');
    await answered();
    assert.equal((await labels())[0], 'tench, Tinca tinca');
    assert.equal(await page.getAttribute('#preview', 'src'), '/api/samples/fish.png');
  });

  it('says in words that a corrupt file is not an image', async () => {
    await page.setInputFiles('#file', { name: 'corrupt.png', mimeType: 'image/png', buffer: Buffer.from('this is not a PNG at all') });
    await page.waitForSelector('#error:not([hidden])');
    assert.match((await page.textContent('#error')) ?? '', /not an image we can read/);
    assert.deepEqual(await labels(), []);
  });

  it('works by keyboard alone and fits a phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const gallery = page.locator('button[data-sample="kitten.png"]');
    await gallery.focus();
    await page.keyboard.press('Enter');
    await answered();
    assert.equal((await labels())[0], 'tabby, tabby cat');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling on a phone (overflow ${overflow}px)`);
    for (const id of ['model', 'file', 'camera']) {
      assert.equal(await page.locator(`label[for="${id}"]`).count() > 0, true, `#${id} has a label`);
    }
    await page.screenshot({ path: join(SCREENSHOTS, 'webapp-phone.png'), fullPage: true });
  });

  // Last, so the other tests see the page as it starts. The model it adds stays in the run's shared
  // repository (removed at exit) beside squeezenet, which keeps its place as the default.
  it('adds a model with its labels file from the page, then classifies with it and shows its labels', async function () {
    this.timeout(120_000);
    await page.click('#add-model-title');
    await page.setInputFiles('#add-model-file', join(fixtureModel('mnist'), 'model.onnx'));
    const words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
    await page.setInputFiles('#add-model-labels', { name: 'labels.txt', mimeType: 'text/plain', buffer: Buffer.from(words.join('\n') + '\n') });
    await page.fill('#add-model-name', 'page-digits');
    await page.selectOption('#add-model-channels', 'grey');
    await page.check('#add-model-logits');
    await page.click('#add-model button[type="submit"]');
    await page.waitForFunction(() => /^(Added|[A-Z_]+:)/.test(document.getElementById('add-model-status')?.textContent ?? ''), undefined, { timeout: 100_000 });
    assert.equal(await page.textContent('#add-model-status'), 'Added page-digits version 1.');
    assert.equal(await page.textContent('#model option[value="page-digits"]'), 'page-digits (10 classes)');
    await page.selectOption('#model', 'page-digits');
    await page.setInputFiles('#file', fixtureImage('digit.png'));
    await answered();
    assert.match((await page.textContent('#status')) ?? '', /^Most likely: eight .* by page-digits v1\./, `error shown: ${await page.textContent('#error')}`);
    assert.equal((await labels())[0], 'eight');
  });
});
