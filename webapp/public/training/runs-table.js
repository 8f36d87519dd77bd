// Experiments and runs on the training page: the runs table, refreshed while a training runs, and
// the side-by-side comparison of the runs picked in it.
import { RunCurves } from './charts.js';
import { showConfusion } from './confusion.js';
import { datasetName } from './datasets.js';
import { $, api, el, errorText, num, paramsText, pct, seconds } from './page.js';

const runsTable = $('runs');
const selected = new Set();
let experiments = [];
let runsLoads = 0; // answers of overlapping loads can arrive out of order: only the newest is drawn
let runsRefresh = null;

/** Loads the runs again soon; calls meanwhile share that one load. */
export function scheduleRunsRefresh() {
  if (runsRefresh) return;
  runsRefresh = setTimeout(() => {
    runsRefresh = null;
    void loadRuns();
  }, 300);
}

export async function loadRuns() {
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
      e.test ? el('button', { type: 'button', className: 'link-button', 'data-confusion': e.id, text: 'Confusion matrix', onclick: () => void showConfusion(e.id, e.test) }) : null,
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


/** The test metrics of an experiment the table lists, if it does. */
export function experimentTest(experimentId) {
  return experiments.find((e) => e.id === experimentId)?.test;
}
