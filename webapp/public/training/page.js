// Helpers of the training page's modules: DOM building, the JSON API with its error words, number formats.
export const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Words for each stable error code; the server's message follows. */
const ERROR_WORDS = {
  BAD_REQUEST: 'The request is not right.',
  BAD_DATASET: 'That archive cannot be used as a dataset.',
  IMAGE_TOO_LARGE: 'That file is too large to upload.',
  PAYLOAD_TOO_LARGE: 'That file is too large to upload.',
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

export function el(tag, props = {}, ...children) {
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

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== '') node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function errorText(error, fallback) {
  const words = ERROR_WORDS[error?.code] ?? fallback;
  return error?.message ? `${words} (${error.message})` : words;
}

export async function api(path, init) {
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

export const pct = (v) => (typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '–');
export const num = (v, digits = 4) => (typeof v === 'number' ? v.toFixed(digits) : '–');
export const seconds = (ms) => (typeof ms === 'number' ? (ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`) : '–');
export const paramsText = (params) => Object.entries(params ?? {}).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toPrecision(4) : v}`).join(', ') || 'defaults';

export function showError(box, error, fallback) {
  box.textContent = errorText(error, fallback);
  box.hidden = false;
}

export function clearError(box) {
  box.hidden = true;
  box.textContent = '';
}
