// The training page: plain ES module, no build step, no third-party code. Charts are SVG drawn here.
const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';
const JOB_KEY = 'zerve.trainingJob';

/** Words for each stable error code; the server's message follows. */
const ERROR_WORDS = {
  BAD_REQUEST: 'The request is not right.',
  BAD_DATASET: 'That archive cannot be used as a dataset.',
  IMAGE_TOO_LARGE: 'That file is too large to upload.',
  UNKNOWN_DATASET: 'There is no such dataset.',
  UNKNOWN_MODEL: 'That model is not served.',
  UNKNOWN_RUN: 'There is no such run.',
  UNKNOWN_JOB: 'That training is not known (any more).',
  UNKNOWN_SERVICE: 'The server does not offer that.',
  NO_WORKERS: 'No training worker or jobs service is running. Try again in a moment.',
  OVERLOADED: 'The cluster is busy. Try again in a moment.',
  TIMEOUT: 'The cluster took too long to answer.',
  WORKER_LOST: 'The training worker stopped during the training.',
  CANCELED: 'The training was canceled.',
  INTERNAL: 'Something went wrong on the server.',
};

const SKIP_WORDS = {
  'not-an-image': 'not an image',
  'corrupt-image': 'corrupt image',
  'too-large': 'too large',
  symlink: 'a symbolic link',
  hidden: 'a hidden file',
  'not-in-class-folder': 'not in a class folder',
  duplicate: 'a duplicate of another image',
  'unknown-test-class': 'a test image of a class with no training images',
  'empty-class': 'a class folder with no usable image',
};

// Distinct colours (Okabe-Ito and Tableau), with dash patterns so that lines differ beyond colour too.
const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#7f3c8d', '#4e79a7', '#b07aa1', '#59a14f'];
const DASHES = ['', '7 4', '2 4', '10 4 2 4'];

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== '') node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function errorText(error, fallback) {
  const words = ERROR_WORDS[error?.code] ?? fallback;
  return error?.message ? `${words} (${error.message})` : words;
}

async function api(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw Object.assign(new Error(`the server cannot be reached: ${err.message}`), { code: 'INTERNAL' });
  }
  const body = await response.json().catch(() => ({ error: { code: 'INTERNAL', message: `HTTP ${response.status}` } }));
  if (!response.ok || body?.error) {
    const error = body?.error ?? { code: 'INTERNAL', message: `HTTP ${response.status}` };
    throw Object.assign(new Error(error.message), { code: error.code, details: error.details });
  }
  return body;
}

const pct = (v) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '–');
const num = (v, digits = 4) => (typeof v === 'number' ? v.toFixed(digits) : '–');
const seconds = (ms) => (typeof ms === 'number' ? (ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`) : '–');
const paramsText = (params) => Object.entries(params ?? {}).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toPrecision(4) : v}`).join(', ') || 'defaults';

function showError(box, error, fallback) {
  box.textContent = errorText(error, fallback);
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.textContent = '';
}

// ---------------------------------------------------------------------------------------------
// Charts: one line per run, drawn as SVG
// ---------------------------------------------------------------------------------------------

/** A series: { key, label, color, dash, points: [[x, y], ...] }. */
function drawChart(node, series, { yLabel, fraction }) {
  const W = 640;
  const H = 280;
  const m = { left: 58, right: 18, top: 14, bottom: 44 };
  node.setAttribute('viewBox', `0 0 ${W} ${H}`);
  node.replaceChildren();
  const points = series.flatMap((s) => s.points);
  node.dataset.points = String(points.length);
  node.dataset.series = String(series.filter((s) => s.points.length > 0).length);
  if (points.length === 0) {
    node.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'No epochs yet'));
    node.setAttribute('aria-description', 'No epochs yet.');
    return;
  }
  const maxX = Math.max(2, ...points.map((p) => p[0]));
  let yMin = 0;
  let yMax = 1;
  if (!fraction) {
    const top = Math.max(...points.map((p) => p[1]));
    const step = niceStep(top / 4);
    yMax = Math.max(step, Math.ceil((top * 1.05) / step) * step);
  }
  const x = (v) => m.left + ((v - 1) / (maxX - 1)) * (W - m.left - m.right);
  const y = (v) => H - m.bottom - ((Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin)) * (H - m.top - m.bottom);
  const yTicks = 4;
  for (let i = 0; i <= yTicks; i++) {
    const value = yMin + ((yMax - yMin) * i) / yTicks;
    node.append(svg('line', { x1: m.left, x2: W - m.right, y1: y(value), y2: y(value), class: 'grid' }));
    node.append(svg('text', { x: m.left - 8, y: y(value) + 4, 'text-anchor': 'end', class: 'tick' }, fraction ? `${Math.round(value * 100)}%` : formatTick(value)));
  }
  const xStep = Math.max(1, Math.ceil((maxX - 1) / 8));
  for (let v = 1; v <= maxX; v += xStep) {
    node.append(svg('text', { x: x(v), y: H - m.bottom + 18, 'text-anchor': 'middle', class: 'tick' }, String(v)));
  }
  node.append(svg('line', { x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom, class: 'axis' }));
  node.append(svg('line', { x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom, class: 'axis' }));
  node.append(svg('text', { x: (m.left + W - m.right) / 2, y: H - 6, 'text-anchor': 'middle', class: 'tick' }, 'epoch'));
  node.append(svg('text', { x: 14, y: (m.top + H - m.bottom) / 2, 'text-anchor': 'middle', class: 'tick', transform: `rotate(-90 14 ${(m.top + H - m.bottom) / 2})` }, yLabel));
  const described = [];
  for (const s of series) {
    if (s.points.length === 0) continue;
    const line = svg('polyline', {
      points: s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' '),
      fill: 'none',
      stroke: s.color,
      'stroke-width': 2.5,
      'stroke-dasharray': s.dash,
      'stroke-linejoin': 'round',
      'data-key': s.key,
    });
    line.append(svg('title', {}, s.label));
    const [lx, ly] = s.points[s.points.length - 1];
    node.append(line, svg('circle', { cx: x(lx), cy: y(ly), r: 3.5, fill: s.color }));
    described.push(`${s.label}: ${fraction ? pct(ly) : num(ly)} after epoch ${lx}`);
  }
  node.setAttribute('aria-description', described.join('; '));
}

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

function formatTick(v) {
  return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}

function drawLegend(list, series) {
  list.replaceChildren(
    ...series.map((s) => {
      const swatch = svg('svg', { viewBox: '0 0 32 12', 'aria-hidden': 'true' });
      swatch.append(svg('line', { x1: 1, x2: 31, y1: 6, y2: 6, stroke: s.color, 'stroke-width': 3, 'stroke-dasharray': s.dash }));
      return el('li', { 'data-key': s.key }, swatch, el('span', { text: s.label }));
    }),
  );
}

function styleOf(index) {
  return { color: COLORS[index % COLORS.length], dash: DASHES[Math.floor(index / COLORS.length) % DASHES.length] };
}

/** Loss and validation-accuracy series of runs, keyed by run id (the refit is a series of its own). */
class RunCurves {
  constructor() {
    this.series = new Map();
  }

  clear() {
    this.series.clear();
  }

  ensure(key, label) {
    let s = this.series.get(key);
    if (!s) {
      s = { key, label, ...styleOf(this.series.size), loss: [], acc: [] };
      this.series.set(key, s);
    }
    return s;
  }

  /** Adds one epoch; x is the epoch's position in its series (k-fold runs repeat epoch numbers). */
  add(key, label, epoch) {
    const s = this.ensure(key, label);
    const x = s.loss.length + 1;
    s.loss.push([x, epoch.loss]);
    if (key !== 'refit') s.acc.push([x, epoch.valAccuracy]);
  }

  /** Every run of a stored experiment or a list of runs, with their epochs. */
  load(runs, { withRefit }) {
    this.clear();
    for (const run of runs) {
      const label = `${run.id}: ${paramsText(run.params)}`;
      this.ensure(run.id, label);
      for (const e of run.epochs ?? []) if (e.phase === 'run') this.add(run.id, label, e);
    }
    if (withRefit) {
      for (const run of runs) for (const e of run.epochs ?? []) if (e.phase === 'refit') this.add('refit', 'refit of the best run on train + validation', e);
    }
  }

  draw(lossNode, accNode, legend) {
    const list = [...this.series.values()];
    drawChart(lossNode, list.map((s) => ({ ...s, points: s.loss })), { yLabel: 'loss', fraction: false });
    drawChart(accNode, list.filter((s) => s.key !== 'refit').map((s) => ({ ...s, points: s.acc })), { yLabel: 'accuracy', fraction: true });
    drawLegend(legend, list);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Datasets
// ---------------------------------------------------------------------------------------------

const datasetSelect = $('dataset');
let datasets = [];

function datasetLabel(d) {
  const name = d.name ?? `${d.id.slice(0, 12)}…`;
  return `${name}: ${d.classes.length} classes, ${d.images} images`;
}

async function loadDatasets(select) {
  try {
    datasets = await api('/api/datasets');
  } catch (err) {
    datasets = [];
    datasetSelect.replaceChildren(new Option('No datasets (the training worker does not answer)', ''));
    showError($('train-error'), err, 'The datasets could not be listed.');
    return;
  }
  const chosen = select ?? datasetSelect.value;
  datasetSelect.replaceChildren(...datasets.map((d) => new Option(datasetLabel(d), d.name ?? d.id)));
  if (chosen && datasets.some((d) => (d.name ?? d.id) === chosen)) datasetSelect.value = chosen;
  if (!$('model-name').value) suggestModelName();
}

function suggestModelName() {
  const d = datasets.find((x) => (x.name ?? x.id) === datasetSelect.value);
  if (!d) return;
  $('model-name').value = d.id === 'mnist' ? 'digits' : (d.name ?? `dataset-${d.id.slice(0, 8)}`);
}

/** Photo datasets default to transfer learning when a backbone is served (as the training worker does); digits to the MLP. */
let familyChosen = false;
function suggestFamily() {
  if (familyChosen) return;
  const d = datasets.find((x) => (x.name ?? x.id) === datasetSelect.value);
  const served = $('backbone').value !== '';
  $('family').value = d && d.id !== 'mnist' && served ? 'transfer' : 'mlp';
  syncForm();
}

function showManifest(summary) {
  $('manifest-title').textContent = `${summary.name ?? summary.id.slice(0, 12)}: ${summary.images} images in ${summary.classes.length} classes (${summary.source})`;
  $('manifest-counts').tBodies[0].replaceChildren(
    ...summary.classes.map((c) =>
      el('tr', {}, el('th', { scope: 'row', text: c }), el('td', { className: 'num', text: String(summary.counts[c]?.train ?? 0) }), el('td', { className: 'num', text: String(summary.counts[c]?.test ?? 0) })),
    ),
  );
  const skipped = summary.skipped ?? [];
  $('skipped-box').hidden = skipped.length === 0;
  $('skipped-box').open = skipped.length > 0 && skipped.length <= 20;
  $('skipped-summary').textContent = `${skipped.length} file${skipped.length === 1 ? '' : 's'} skipped`;
  $('skipped').tBodies[0].replaceChildren(
    ...skipped.map((s) => el('tr', {}, el('td', { text: s.path }), el('td', { text: `${SKIP_WORDS[s.reason] ?? s.reason}${s.detail ? ` (${s.detail})` : ''}` }))),
  );
  $('manifest').hidden = false;
}

$('upload-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = $('archive').files?.[0];
  const error = $('upload-error');
  clearError(error);
  if (!file) return;
  const name = $('dataset-name').value.trim();
  const status = $('upload-status');
  status.textContent = `Uploading ${file.name} (${(file.size / 1048576).toFixed(1)} MB) and reading its images…`;
  status.classList.add('busy');
  $('upload').disabled = true;
  try {
    const body = new FormData();
    body.append('archive', file, file.name);
    const summary = await api(`/api/datasets${name ? `?name=${encodeURIComponent(name)}` : ''}`, { method: 'POST', body });
    status.textContent = `Added ${summary.name ?? summary.id.slice(0, 12)}: ${summary.images} images, classes ${summary.classes.join(', ')}.`;
    showManifest(summary);
    $('model-name').value = '';
    await loadDatasets(summary.name ?? summary.id);
    suggestFamily();
  } catch (err) {
    status.textContent = 'The dataset was not added.';
    showError(error, err, 'The dataset could not be added.');
  } finally {
    status.classList.remove('busy');
    $('upload').disabled = false;
  }
});

datasetSelect.addEventListener('change', () => {
  suggestModelName();
  suggestFamily();
});

// ---------------------------------------------------------------------------------------------
// 2. The training form
// ---------------------------------------------------------------------------------------------

async function loadBackbones() {
  const backbone = $('backbone');
  try {
    const info = await api('/api/info');
    // The training worker reads squeezenet layouts only (workers/training/backbone.ts).
    const names = info.models.map((m) => m.name).filter((n) => n.startsWith('squeezenet'));
    // A float32 one first: about twice as fast on a CPU.
    names.sort((a, b) => Number(b.includes('fp32')) - Number(a.includes('fp32')) || a.localeCompare(b));
    backbone.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.length === 0) backbone.replaceChildren(new Option('No squeezenet model is served', ''));
  } catch {
    backbone.replaceChildren(new Option('The models could not be listed', ''));
  }
}

function syncForm() {
  const transfer = $('family').value === 'transfer';
  $('backbone-field').hidden = !transfer;
  $('head-field').hidden = !transfer;
  const mode = $('search-mode').value;
  $('search-params-field').hidden = mode === 'none';
  $('samples-field').hidden = mode !== 'random';
}
$('family').addEventListener('change', () => {
  familyChosen = true;
  syncForm();
});
$('search-mode').addEventListener('change', syncForm);

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

function parseFixedParams(text) {
  const params = {};
  for (const line of lines(text)) {
    const eq = line.indexOf('=');
    if (eq < 1) throw Object.assign(new Error(`write each fixed hyperparameter as key=value, not ${JSON.stringify(line)}`), { code: 'BAD_REQUEST' });
    const value = line.slice(eq + 1).trim();
    params[line.slice(0, eq).trim()] = value !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
  }
  return params;
}

/** The body of POST /api/train, from the form. */
function trainRequest() {
  const request = { datasetId: datasetSelect.value, family: $('family').value };
  if (request.family === 'transfer') {
    request.backbone = $('backbone').value;
    request.head = $('head').value;
  }
  const params = parseFixedParams($('fixed-params').value);
  if (Object.keys(params).length > 0) request.params = params;
  const mode = $('search-mode').value;
  if (mode !== 'none') {
    request.search = { mode, params: lines($('search-params').value) };
    if (mode === 'random') request.search.samples = Number($('samples').value);
  }
  request.epochs = Number($('epochs').value);
  const split = $('split').value;
  if (split === 'explicit') request.split = { kind: 'explicit' };
  else if (split.startsWith('holdout:')) request.split = { kind: 'holdout', testFraction: Number(split.slice(8)) };
  else if (split.startsWith('kfold:')) request.split = { kind: 'auto', folds: Number(split.slice(6)) };
  request.seed = Number($('seed').value);
  request.export = { name: $('model-name').value.trim() };
  return request;
}

// ---------------------------------------------------------------------------------------------
// 3. Progress: the job's Server-Sent Events
// ---------------------------------------------------------------------------------------------

const curves = new RunCurves();
const progressLine = $('progress');
const progressBar = $('progress-bar');
let job = null; // { id, eventsUrl, source, experimentId, runs, lastSeq }
let runsRefresh = null;

function drawLive() {
  curves.draw($('loss-chart'), $('acc-chart'), $('legend'));
}

function setTraining(active) {
  $('start').disabled = active;
  $('cancel').hidden = !active;
  progressLine.classList.toggle('busy', active);
}

function onProgress(message) {
  if (message.type === 'started') {
    job.experimentId = message.experimentId;
    job.runs = message.runs ?? job.runs;
    const what = message.family === 'transfer' ? `transfer learning on ${message.backbone}, ` : message.family === 'mlp' ? 'an MLP on pixels, ' : '';
    progressLine.textContent = `Training ${message.experimentId} on ${message.host}: ${what}${job.runs} run${job.runs === 1 ? '' : 's'}.`;
    scheduleRunsRefresh();
    return;
  }
  job.experimentId ??= message.experimentId;
  if (message.type === 'features') {
    progressLine.textContent = `Preparing the images: ${message.done} of ${message.total}.`;
    return;
  }
  if (message.type !== 'epoch') return; // a message type this page does not know yet
  const refit = message.phase === 'refit';
  const label = refit ? 'refit of the best run on train + validation' : `run ${message.run}: ${paramsText(message.params)}`;
  curves.add(refit ? 'refit' : message.runId, label, message);
  drawLive();
  const what = refit ? 'Refitting the best run' : `Run ${message.run} of ${message.runs}`;
  const val = refit ? '' : `, validation accuracy ${pct(message.valAccuracy)}`;
  progressLine.textContent =
    `${what}: epoch ${message.epoch} of ${message.epochs}, loss ${num(message.loss)}${val}. ` +
    `${seconds(message.elapsedMs)} so far, about ${seconds(message.etaMs)} left.`;
  progressBar.hidden = false;
  progressBar.value = message.elapsedMs / Math.max(1, message.elapsedMs + message.etaMs);
  if (!refit && message.epoch === 1) scheduleRunsRefresh();
}

function showResult(result) {
  const box = $('result');
  const items = [
    el('p', { text: `Done in ${seconds(result.elapsedMs)}: ${result.runs.length} run${result.runs.length === 1 ? '' : 's'}, best ${result.best.runId} (${paramsText(result.best.params)}), validation accuracy ${pct(result.best.valAccuracy)}.` }),
    el('p', { text: `Test accuracy ${pct(result.test.accuracy)}, macro F1 ${num(result.test.macroF1, 3)}.` }),
  ];
  if (result.model) {
    items.push(el('p', {}, `Served as classify.${result.model.name}, version ${result.model.version}: `, el('a', { href: '/', text: 'classify an image with it' }), '.'));
  }
  items.push(el('p', {}, el('button', { type: 'button', className: 'link-button', text: 'Show the confusion matrix', onclick: () => void showConfusion(result.experimentId) })));
  box.replaceChildren(...items);
  box.hidden = false;
}

function finish(status) {
  job?.source?.close();
  const experimentId = status.result?.experimentId ?? job?.experimentId;
  job = null;
  sessionStorage.removeItem(JOB_KEY);
  setTraining(false);
  progressBar.hidden = true;
  if (status.state === 'succeeded') {
    const result = status.result;
    progressLine.textContent = `Finished: test accuracy ${pct(result.test.accuracy)}${result.model ? `, model ${result.model.name} version ${result.model.version} is served` : ''}.`;
    showResult(result);
  } else {
    progressLine.textContent = status.state === 'canceled' ? 'The training was canceled.' : 'The training failed.';
    if (status.failure) showError($('train-error'), status.failure, 'The training failed.');
  }
  // Progress entries beyond the jobs service's window may have been missed: redraw from the run store.
  if (experimentId) {
    api(`/api/runs/${encodeURIComponent(experimentId)}`)
      .then((experiment) => {
        if (job) return; // a newer training started meanwhile: its live curves stay
        curves.load(experiment.runs, { withRefit: true });
        drawLive();
      })
      .catch(() => undefined);
  }
  void loadRuns();
}

function follow(ticket) {
  job = { id: ticket.id, eventsUrl: ticket.eventsUrl, runs: ticket.runs ?? 1, experimentId: null, lastSeq: 0 };
  sessionStorage.setItem(JOB_KEY, JSON.stringify(ticket));
  setTraining(true);
  listen(job);
}

/** Follows the job's events; entries already seen (by seq) are skipped, so listening again is harmless. */
function listen(current) {
  const source = new EventSource(current.eventsUrl);
  current.source = source;
  source.addEventListener('state', (event) => {
    const { state } = JSON.parse(event.data);
    if (state === 'queued' && !current.experimentId) progressLine.textContent = 'Queued: waiting for a training worker.';
  });
  source.addEventListener('progress', (event) => {
    const entry = JSON.parse(event.data);
    if (job !== current || entry.seq <= current.lastSeq) return;
    current.lastSeq = entry.seq;
    if (entry.data && typeof entry.data === 'object') onProgress(entry.data);
  });
  source.addEventListener('done', (event) => {
    source.close(); // the server ends the stream now: do not let the browser reconnect
    if (job === current) finish(JSON.parse(event.data));
  });
  source.addEventListener('error', async () => {
    // The browser reconnects by itself after a dropped stream; it gives up (CLOSED) when the answer is
    // not a stream, e.g. a 503 while the jobs service restarts, or a 404 for a job that is gone.
    if (source.readyState !== EventSource.CLOSED || job !== current) return;
    try {
      const status = await api(`/api/jobs/${encodeURIComponent(current.id)}`);
      if (job !== current) return;
      if (['succeeded', 'failed', 'canceled'].includes(status.state)) finish(status);
      else setTimeout(() => job === current && listen(current), 2000);
    } catch (err) {
      if (job !== current) return;
      if (err.code === 'UNKNOWN_JOB') finish({ state: 'failed', failure: { code: err.code, message: err.message } });
      else setTimeout(() => job === current && listen(current), 2000);
    }
  });
}

$('train-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const error = $('train-error');
  clearError(error);
  let request;
  try {
    request = trainRequest();
  } catch (err) {
    showError(error, err, 'The form is not complete.');
    return;
  }
  $('start').disabled = true;
  try {
    const ticket = await api('/api/train', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
    curves.clear();
    drawLive();
    $('result').hidden = true;
    progressLine.textContent = `Submitted: ${ticket.runs} run${ticket.runs === 1 ? '' : 's'}.`;
    follow(ticket);
  } catch (err) {
    $('start').disabled = false;
    showError(error, err, 'The training could not start.');
  }
});

$('cancel').addEventListener('click', async () => {
  if (!job) return;
  try {
    await api(`/api/jobs/${encodeURIComponent(job.id)}`, { method: 'DELETE' });
    progressLine.textContent = 'Canceling…';
  } catch (err) {
    showError($('train-error'), err, 'The training could not be canceled.');
  }
});

// ---------------------------------------------------------------------------------------------
// 4. Experiments and runs
// ---------------------------------------------------------------------------------------------

const runsTable = $('runs');
const selected = new Set();
let experiments = [];
let runsLoads = 0; // answers of overlapping loads can arrive out of order: only the newest is drawn

function scheduleRunsRefresh() {
  if (runsRefresh) return;
  runsRefresh = setTimeout(() => {
    runsRefresh = null;
    void loadRuns();
  }, 300);
}

function datasetName(id) {
  const d = datasets.find((x) => x.id === id);
  return d?.name ?? (id.length > 12 ? `${id.slice(0, 12)}…` : id);
}

async function loadRuns() {
  const status = $('runs-status');
  const load = ++runsLoads;
  let answer;
  try {
    answer = await api('/api/runs?limit=50');
  } catch (err) {
    if (load === runsLoads) status.textContent = errorText(err, 'The runs could not be listed.');
    return;
  }
  if (load !== runsLoads) return;
  experiments = answer;
  const known = new Set(experiments.flatMap((e) => e.runs.map((r) => r.id)));
  for (const id of [...selected]) if (!known.has(id)) selected.delete(id);
  status.textContent = experiments.length === 0 ? 'No experiment yet.' : `${experiments.length} experiment${experiments.length === 1 ? '' : 's'}, newest first.`;
  const head = el(
    'thead',
    {},
    el('tr', {}, ...['Compare', 'Run', 'Status', 'Parameters', 'Val. accuracy', 'Val. loss', 'Best epoch', 'Time', 'Model'].map((h, i) => el('th', { scope: 'col', className: i >= 4 && i <= 7 ? 'num' : undefined, text: h }))),
  );
  const bodies = experiments.map((e) => {
    const line = el(
      'div',
      { className: 'experiment-line' },
      el('span', { className: 'experiment-id', text: `Experiment ${e.id}` }),
      el('span', { className: `badge ${e.status}`, text: e.status }),
      el('span', { text: `dataset ${datasetName(e.datasetId)}` }),
      el('span', { text: new Date(e.startedAt).toLocaleString() }),
      e.test ? el('span', { text: `test accuracy ${pct(e.test.accuracy)}` }) : null,
      e.modelName ? el('span', { text: `model ${e.modelName} v${e.modelVersion}` }) : null,
      e.error ? el('span', { text: e.error }) : null,
      e.test ? el('button', { type: 'button', className: 'link-button', 'data-confusion': e.id, text: 'Confusion matrix', onclick: () => void showConfusion(e.id) }) : null,
    );
    const rows = e.runs.map((r) => {
      const best = r.id === e.bestRunId;
      const box = el('input', { type: 'checkbox', value: r.id, 'aria-label': `Compare run ${r.id}` });
      box.checked = selected.has(r.id);
      box.addEventListener('change', () => {
        if (box.checked) selected.add(r.id);
        else selected.delete(r.id);
        syncCompare();
      });
      return el(
        'tr',
        { 'data-run': r.id, className: best ? 'best' : undefined },
        el('td', { className: 'select' }, box),
        el('th', { scope: 'row', text: best ? `${r.id} (best)` : r.id }),
        el('td', {}, el('span', { className: `badge ${r.status}`, text: r.status })),
        el('td', { text: paramsText(r.params) }),
        el('td', { className: 'num', text: pct(r.valAccuracy) }),
        el('td', { className: 'num', text: num(r.valLoss) }),
        el('td', { className: 'num', text: r.bestEpoch === null ? '–' : String(r.bestEpoch) }),
        el('td', { className: 'num', text: seconds(r.durationMs ?? undefined) }),
        el('td', { text: best && e.modelName ? `${e.modelName} v${e.modelVersion}` : '' }),
      );
    });
    return el('tbody', { 'data-experiment': e.id }, el('tr', {}, el('th', { scope: 'rowgroup', colspan: 9 }, line)), ...rows);
  });
  runsTable.replaceChildren(head, ...bodies);
  syncCompare();
}

function syncCompare() {
  const button = $('compare');
  button.disabled = selected.size < 2;
  button.textContent = selected.size < 2 ? 'Compare selected runs (pick two or more)' : `Compare ${selected.size} selected runs`;
}

$('refresh-runs').addEventListener('click', () => void loadRuns());

// ---------------------------------------------------------------------------------------------
// Compare runs side by side
// ---------------------------------------------------------------------------------------------

$('compare').addEventListener('click', async () => {
  const ids = [...selected];
  let runs;
  try {
    runs = await Promise.all(ids.map((id) => api(`/api/runs/${encodeURIComponent(id)}`)));
  } catch (err) {
    $('runs-status').textContent = errorText(err, 'The runs could not be read.');
    return;
  }
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const bestAcc = Math.max(...runs.map((r) => r.valAccuracy ?? -1));
  const bestLoss = Math.min(...runs.map((r) => r.valLoss ?? Infinity));
  const rows = [
    ['Experiment', (r) => r.experimentId],
    ['Dataset', (r) => datasetName(r.datasetId)],
    ['Status', (r) => r.status],
    ...keys.map((k) => [k, (r) => (r.params[k] === undefined ? '–' : String(r.params[k]))]),
    ['Validation accuracy', (r) => pct(r.valAccuracy), (r) => r.valAccuracy === bestAcc],
    ['Validation loss', (r) => num(r.valLoss), (r) => r.valLoss === bestLoss],
    ['Best epoch', (r) => (r.bestEpoch === null ? '–' : String(r.bestEpoch))],
    ['Epochs run', (r) => (r.epochsRun === null ? '–' : String(r.epochsRun))],
    ['Time', (r) => seconds(r.durationMs ?? undefined)],
    ['Seed', (r) => String(r.seed)],
    ['Host', (r) => r.host ?? '–'],
    ['Model', (r) => (r.modelName ? `${r.modelName} v${r.modelVersion}` : '–')],
  ];
  $('compare-table').replaceChildren(
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Run' }), ...runs.map((r) => el('th', { scope: 'col', text: r.id })))),
    el(
      'tbody',
      {},
      ...rows.map(([name, value, best]) =>
        el('tr', {}, el('th', { scope: 'row', text: name }), ...runs.map((r) => el('td', { className: best?.(r) ? 'best' : undefined, text: value(r) }))),
      ),
    ),
  );
  const compared = new RunCurves();
  compared.load(runs, { withRefit: false });
  compared.draw($('compare-loss-chart'), $('compare-acc-chart'), $('compare-legend'));
  $('compare-section').hidden = false;
  $('compare-section').scrollIntoView({ behavior: 'smooth', block: 'start' });
});

// ---------------------------------------------------------------------------------------------
// Confusion matrix heatmap
// ---------------------------------------------------------------------------------------------

async function showConfusion(experimentId) {
  let test = experiments.find((e) => e.id === experimentId)?.test;
  if (!test) {
    try {
      test = (await api(`/api/runs/${encodeURIComponent(experimentId)}`)).test;
    } catch (err) {
      $('runs-status').textContent = errorText(err, 'The experiment could not be read.');
      return;
    }
  }
  if (!test) return;
  const { classes, confusion } = test;
  $('confusion-title').textContent = `Confusion matrix of ${experimentId}`;
  $('confusion-summary').textContent =
    `On the test split: accuracy ${pct(test.accuracy)}, macro precision ${num(test.macroPrecision, 3)}, ` +
    `macro recall ${num(test.macroRecall, 3)}, macro F1 ${num(test.macroF1, 3)}. Rows are the actual class, columns the predicted one; ` +
    'the colour is the share of the row.';
  const table = $('confusion');
  table.replaceChildren(
    el('caption', { className: 'visually-hidden', text: `Test images of ${experimentId} by actual class (rows) and predicted class (columns)` }),
    el(
      'thead',
      {},
      el('tr', {}, el('td', { className: 'corner' }), el('th', { scope: 'colgroup', colspan: classes.length, text: 'Predicted' })),
      el('tr', {}, el('th', { scope: 'col', text: 'Actual' }), ...classes.map((c) => el('th', { scope: 'col', className: 'predicted', text: c }))),
    ),
    el(
      'tbody',
      {},
      ...confusion.map((row, i) => {
        const total = row.reduce((a, b) => a + b, 0);
        return el(
          'tr',
          {},
          el('th', { scope: 'row', text: classes[i] }),
          ...row.map((count, j) => {
            const share = total > 0 ? count / total : 0;
            const cell = el('td', {
              className: [i === j ? 'diagonal' : '', share > 0.55 ? 'dark' : ''].filter(Boolean).join(' ') || undefined,
              title: `actual ${classes[i]}, predicted ${classes[j]}: ${count} (${pct(share)} of ${classes[i]})`,
              'data-share': share.toFixed(3),
              text: String(count),
            });
            // CSSOM, which the page's Content-Security-Policy allows (inline style attributes it does not).
            cell.style.backgroundColor = `rgba(0, 114, 178, ${(0.06 + 0.94 * share).toFixed(3)})`;
            return cell;
          }),
        );
      }),
    ),
  );
  $('per-class').replaceChildren(
    el('thead', {}, el('tr', {}, ...['Class', 'Precision', 'Recall', 'F1', 'Test images'].map((h, i) => el('th', { scope: 'col', className: i > 0 ? 'num' : undefined, text: h })))),
    el(
      'tbody',
      {},
      ...test.perClass.map((p, i) =>
        el(
          'tr',
          {},
          el('th', { scope: 'row', text: classes[i] }),
          el('td', { className: 'num', text: num(p.precision, 3) }),
          el('td', { className: 'num', text: num(p.recall, 3) }),
          el('td', { className: 'num', text: num(p.f1, 3) }),
          el('td', { className: 'num', text: String(p.support) }),
        ),
      ),
    ),
  );
  $('confusion-section').hidden = false;
  $('confusion-section').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

async function init() {
  syncForm();
  drawLive();
  await Promise.all([loadDatasets(), loadBackbones()]);
  suggestFamily();
  await loadRuns();
  // A training this tab started before a reload: follow it again.
  const saved = sessionStorage.getItem(JOB_KEY);
  if (saved) {
    try {
      follow(JSON.parse(saved));
    } catch {
      sessionStorage.removeItem(JOB_KEY);
    }
  }
  document.body.dataset.ready = 'true';
}

void init();
