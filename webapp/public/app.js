// The page's script: plain ES module, no build step, no third-party code.
const $ = (id) => document.getElementById(id);
const modelSelect = $('model');
const fileInput = $('file');
const cameraInput = $('camera');
const drop = $('drop');
const gallery = $('gallery');
const statusLine = $('status');
const errorBox = $('error');
const result = $('result');
const preview = $('preview');
const previewName = $('preview-name');
const predictionsList = $('predictions');
const timingsList = $('timings');

/** Words for each stable error code; the server's message follows. */
const ERROR_WORDS = {
  BAD_REQUEST: 'The request was not understood.',
  BAD_IMAGE: 'That file is not an image we can read. Try a JPEG, PNG, WebP, GIF, AVIF or TIFF photo.',
  IMAGE_TOO_LARGE: 'That image is too large.',
  UNKNOWN_MODEL: 'That model is not served (any more). Pick another one.',
  UNKNOWN_SERVICE: 'The server does not offer that.',
  NO_WORKERS: 'No worker is serving models right now. Try again in a moment.',
  OVERLOADED: 'The cluster is busy. Try again in a moment.',
  TIMEOUT: 'The cluster took too long to answer. Try again.',
  WORKER_LOST: 'The worker handling the image stopped. Try again.',
  UNAUTHENTICATED: 'Log in first (above).',
  FORBIDDEN: 'Your token does not allow this.',
  INTERNAL: 'Something went wrong on the server.',
};

let current = null; // what is shown: { kind: 'file', file } or { kind: 'sample', sample }
let inFlight = null; // AbortController of the request in progress
let previewUrl = null;
let maxUploadBytes = Infinity;

function setStatus(text, busy = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle('busy', busy);
  result.setAttribute('aria-busy', String(busy));
}

function showError(code, message) {
  const words = ERROR_WORDS[code] ?? 'The image could not be classified.';
  errorBox.textContent = message ? `${words} (${message})` : words;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = '';
}

function percent(p) {
  return `${(p * 100).toFixed(p >= 0.1 ? 1 : 2)}%`;
}

function showPredictions(reply) {
  predictionsList.replaceChildren(
    ...reply.predictions.map((p) => {
      const item = document.createElement('li');
      item.className = 'prediction';
      const line = document.createElement('div');
      line.className = 'prediction-line';
      const label = document.createElement('span');
      label.className = 'prediction-label';
      label.textContent = p.label;
      const value = document.createElement('span');
      value.className = 'prediction-value';
      value.textContent = percent(p.probability);
      line.append(label, value);
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span');
      fill.style.width = `${Math.max(0.5, p.probability * 100)}%`;
      bar.append(fill);
      item.append(line, bar);
      return item;
    }),
  );
  const names = { decodeMs: 'Decoding', inferenceMs: 'Inference', totalMs: 'Worker total', httpMs: 'Round trip (server)' };
  timingsList.replaceChildren(
    ...Object.entries(reply.timings ?? {}).flatMap(([key, ms]) => {
      if (typeof ms !== 'number') return [];
      const dt = document.createElement('dt');
      dt.textContent = names[key] ?? key;
      const dd = document.createElement('dd');
      dd.textContent = `${ms.toFixed(1)} ms`;
      return [dt, dd];
    }),
  );
}

function showPreview(src, name) {
  if (previewUrl && previewUrl !== src) URL.revokeObjectURL(previewUrl);
  previewUrl = src.startsWith('blob:') ? src : null;
  preview.src = src;
  previewName.textContent = name;
  result.hidden = false;
}

async function classify() {
  const model = modelSelect.value;
  if (!current || !model) return;
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  clearError();
  const params = new URLSearchParams({ model, topk: '5' });
  let body;
  if (current.kind === 'sample') {
    params.set('sample', current.sample.name);
  } else {
    if (current.file.size > maxUploadBytes) {
      setStatus('');
      showError('IMAGE_TOO_LARGE', `${current.file.name} is ${(current.file.size / 1048576).toFixed(1)} MB; the limit is ${(maxUploadBytes / 1048576).toFixed(1)} MB`);
      predictionsList.replaceChildren();
      timingsList.replaceChildren();
      return;
    }
    body = new FormData();
    body.append('image', current.file, current.file.name);
  }
  setStatus(`Classifying with ${model}…`, true);
  try {
    const response = await fetch(`/api/classify?${params}`, { method: 'POST', body, signal: controller.signal });
    const reply = await response.json().catch(() => ({ error: { code: 'INTERNAL', message: `HTTP ${response.status}` } }));
    if (controller !== inFlight) return;
    if (!response.ok || reply.error) {
      setStatus('Could not classify this image.');
      predictionsList.replaceChildren();
      timingsList.replaceChildren();
      showError(reply.error?.code, reply.error?.message);
      return;
    }
    const top = reply.predictions[0];
    setStatus(top ? `Most likely: ${top.label} (${percent(top.probability)}), by ${reply.model} v${reply.version}.` : 'No prediction.');
    showPredictions(reply);
  } catch (err) {
    if (err.name === 'AbortError') return;
    setStatus('Could not reach the server.');
    showError('INTERNAL', err.message);
  } finally {
    if (controller === inFlight) {
      inFlight = null;
      statusLine.classList.remove('busy');
      result.setAttribute('aria-busy', 'false');
    }
  }
}

function useFile(file) {
  if (!file) return;
  current = { kind: 'file', file };
  showPreview(URL.createObjectURL(file), file.name);
  void classify();
}

function useSample(sample) {
  current = { kind: 'sample', sample };
  showPreview(sample.url, sample.name);
  void classify();
}

fileInput.addEventListener('change', () => useFile(fileInput.files?.[0]));
cameraInput.addEventListener('change', () => useFile(cameraInput.files?.[0]));
modelSelect.addEventListener('change', () => void classify());
for (const type of ['dragenter', 'dragover']) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
}
for (const type of ['dragleave', 'drop']) {
  drop.addEventListener(type, () => drop.classList.remove('over'));
}
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  useFile(event.dataTransfer?.files?.[0]);
});
// Pasting an image (Ctrl+V) works as well as dropping one.
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) useFile(file);
});

async function loadInfo() {
  try {
    const response = await fetch('/api/info');
    const info = await response.json();
    if (!response.ok) throw Object.assign(new Error(info.error?.message ?? `HTTP ${response.status}`), { code: info.error?.code });
    maxUploadBytes = info.maxUploadBytes ?? Infinity;
    // Most classes first: the richest model is the default.
    const models = [...info.models].sort((a, b) => (b.labels ?? 0) - (a.labels ?? 0) || a.name.localeCompare(b.name));
    modelSelect.replaceChildren(
      ...models.map((m) => {
        const option = document.createElement('option');
        option.value = m.name;
        option.textContent = m.labels ? `${m.name} (${m.labels} classes)` : m.name;
        return option;
      }),
    );
    modelSelect.disabled = models.length === 0;
    if (models.length === 0) {
      setStatus('No model is served yet.');
      showError('NO_WORKERS');
    }
    gallery.replaceChildren(
      ...info.samples.map((sample) => {
        const item = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        button.dataset.sample = sample.name;
        button.setAttribute('aria-label', `Classify the sample ${sample.name}`);
        const img = document.createElement('img');
        img.src = sample.url;
        img.alt = '';
        img.loading = 'lazy';
        const name = document.createElement('span');
        name.textContent = sample.name;
        button.append(img, name);
        button.addEventListener('click', () => useSample(sample));
        item.append(button);
        return item;
      }),
    );
    document.body.dataset.ready = 'true';
  } catch (err) {
    modelSelect.replaceChildren(new Option('No models', ''));
    setStatus('The server is not ready.');
    showError(err.code ?? 'INTERNAL', err.message);
    document.body.dataset.ready = 'error';
  }
}

/**
 * Sends the chosen ONNX file, and its labels file if one is chosen, to POST /api/models with the
 * options of `zerve models add`; every inference worker of the cluster then serves it.
 */
$('add-model').addEventListener('submit', async (event) => {
  event.preventDefault();
  const status = $('add-model-status');
  const query = new URLSearchParams({ name: $('add-model-name').value });
  for (const option of ['channels', 'range', 'size', 'mean', 'std']) {
    const value = $(`add-model-${option}`).value.trim();
    if (value) query.set(option, value);
  }
  if ($('add-model-logits').checked) query.set('logits', 'true');
  const form = new FormData();
  form.append('model', $('add-model-file').files[0]);
  const labels = $('add-model-labels').files[0];
  if (labels) form.append('labels', labels);
  status.textContent = 'Adding… (checked, then handed to an inference worker)';
  try {
    const res = await fetch(`/api/models?${query}`, { method: 'POST', body: form });
    const body = await res.json();
    if (!res.ok) throw Object.assign(new Error(body.error?.message ?? res.statusText), { code: body.error?.code });
    status.textContent = `Added ${body.name} version ${body.version}.`;
    await loadInfo();
  } catch (err) {
    status.textContent = `${err.code ?? 'INTERNAL'}: ${err.message}`;
  }
});

void loadInfo();
