// The training form: its fields shown for the chosen family and search, its suggestions, and the request it makes.
import { $, api } from './page.js';
import { datasets, datasetSelect } from './datasets.js';

function suggestModelName() {
  const d = datasets.find((x) => (x.name ?? x.id) === datasetSelect.value);
  if (!d) return;
  $('model-name').value = d.id === 'mnist' ? 'digits' : (d.name ?? `dataset-${d.id.slice(0, 8)}`);
}

/** Photo datasets default to transfer learning when a backbone is served (as the training worker does); digits to the MLP. */
let familyChosen = false;
export function suggestFamily() {
  if (familyChosen) return;
  const d = datasets.find((x) => (x.name ?? x.id) === datasetSelect.value);
  const served = $('backbone').value !== '';
  $('family').value = d && d.id !== 'mnist' && served ? 'transfer' : 'mlp';
  syncForm();
}

export async function loadBackbones() {
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

export function syncForm() {
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
export function trainRequest() {
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


datasetSelect.addEventListener('datasets-loaded', () => {
  if (!$('model-name').value) suggestModelName();
});
datasetSelect.addEventListener('change', () => {
  suggestModelName();
  suggestFamily();
});
