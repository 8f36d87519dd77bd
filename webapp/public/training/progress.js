// A training's progress on the page: submits the form as a job, follows the job's Server-Sent Events
// (live curves, progress line, result) and cancels it.
import { RunCurves } from './charts.js';
import { showConfusion } from './confusion.js';
import { trainRequest } from './form.js';
import { $, api, clearError, el, num, paramsText, pct, seconds, showError } from './page.js';
import { experimentTest, loadRuns, scheduleRunsRefresh } from './runs-table.js';

const JOB_KEY = 'zerve.trainingJob';
const curves = new RunCurves();
const progressLine = $('progress');
const progressBar = $('progress-bar');
let job = null; // { id, eventsUrl, source, experimentId, runs, lastSeq }

export function drawLive() {
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
  items.push(el('p', {}, el('button', { type: 'button', className: 'link-button', text: 'Show the confusion matrix', onclick: () => void showConfusion(result.experimentId, experimentTest(result.experimentId)) })));
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

export function follow(ticket) {
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


/** Follows again the training this tab started before a reload, if any. */
export function resumeSavedJob() {
  const saved = sessionStorage.getItem(JOB_KEY);
  if (!saved) return;
  try {
    follow(JSON.parse(saved));
  } catch {
    sessionStorage.removeItem(JOB_KEY);
  }
}
