// Datasets on the training page: the list to train from, uploads, and the manifest of the last upload.
import { $, api, clearError, el, showError } from './page.js';

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

export const datasetSelect = $('dataset');
/** The datasets the cluster holds, as `GET /api/datasets` last answered. */
export let datasets = [];

function datasetLabel(d) {
  const name = d.name ?? `${d.id.slice(0, 12)}…`;
  return `${name}: ${d.classes.length} classes, ${d.images} images`;
}

/** Lists the datasets in the select (keeping or making `select` the choice), then tells the form (`datasets-loaded`). */
export async function loadDatasets(select) {
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
  datasetSelect.dispatchEvent(new Event('datasets-loaded'));
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
    // The form suggests a model name and family for the new choice, as for one picked by hand.
    datasetSelect.dispatchEvent(new Event('change'));
  } catch (err) {
    status.textContent = 'The dataset was not added.';
    showError(error, err, 'The dataset could not be added.');
  } finally {
    status.classList.remove('busy');
    $('upload').disabled = false;
  }
});

/** A dataset's name, or its id shortened. */
export function datasetName(id) {
  const d = datasets.find((x) => x.id === id);
  return d?.name ?? (id.length > 12 ? `${id.slice(0, 12)}…` : id);
}
