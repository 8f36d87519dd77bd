// The live cluster page: one EventSource on /cluster/events; every update changes text in place in
// rows kept by key, and only the rows of the page on view exist, so 200 workers and 500 services
// cost what 50 rows do. Charts are uPlot (served from node_modules by the web app).
/* global uPlot */

const PAGE_ROWS = 50;
const HISTORY_S = 15 * 60;
const ALL = '*';
const $ = (id) => document.getElementById(id);

const state = {
  snapshot: undefined,
  broker: ALL,
  /** `*`, a broker endpoint, or `service:<name>` */
  chartKey: ALL,
  pages: { services: 0, workers: 0 },
  rows: { services: new Map(), workers: new Map(), hosts: new Map() },
};

const fmt = (n, digits = 1) => (n === null || n === undefined ? '–' : Number(n).toFixed(digits));
const count = (n) => Number(n).toLocaleString();
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// ---- charts -------------------------------------------------------------------------------------
const charts = {};
let columns = emptyColumns();

function emptyColumns() {
  return { at: [], rps: [], errorsPerS: [], p50Ms: [], p99Ms: [], workers: [], inFlight: [], queued: [] };
}

function makeChart(id, series) {
  const el = $(id);
  const width = () => Math.max(280, el.clientWidth || 400);
  const chart = new uPlot({ width: width(), height: 200, series: [{}, ...series], axes: [{}, {}], scales: { x: { time: true } } }, [[]], el);
  new ResizeObserver(() => chart.setSize({ width: width(), height: 200 })).observe(el);
  return chart;
}

function setupCharts() {
  $('zone').textContent = Intl.DateTimeFormat().resolvedOptions().timeZone;
  charts.rps = makeChart('chart-rps', [
    { label: 'req/s', stroke: '#0a58ca', width: 2 },
    { label: 'errors/s', stroke: '#a4161a', width: 2 },
  ]);
  charts.latency = makeChart('chart-latency', [
    { label: 'p50 ms', stroke: '#2b8a3e', width: 2 },
    { label: 'p99 ms', stroke: '#e67700', width: 2 },
  ]);
  charts.load = makeChart('chart-load', [
    { label: 'workers', stroke: '#495057', width: 2 },
    { label: 'in flight', stroke: '#0a58ca', width: 2 },
    { label: 'queued', stroke: '#a4161a', width: 2 },
  ]);
}

function drawCharts() {
  const c = columns;
  charts.rps.setData([c.at, c.rps, c.errorsPerS]);
  charts.latency.setData([c.at, c.p50Ms, c.p99Ms]);
  charts.load.setData([c.at, c.workers, c.inFlight, c.queued]);
}

async function loadHistory(key) {
  state.chartKey = key;
  setText($('chart-of'), key === ALL ? 'all services' : key.startsWith('service:') ? key.slice('service:'.length) : key);
  const response = await fetch(`/cluster/history?key=${encodeURIComponent(key)}`);
  columns = response.ok ? await response.json() : emptyColumns();
  if (state.chartKey !== key) return;
  drawCharts();
}

function appendPoint(snapshot) {
  const key = state.chartKey;
  const row = key.startsWith('service:')
    ? snapshot.services.find((s) => s.broker === ALL && s.name === key.slice('service:'.length))
    : snapshot.totals.find((t) => t.broker === key);
  if (!row) return;
  const at = snapshot.at / 1000;
  if (columns.at.length > 0 && columns.at.at(-1) >= at) return;
  const c = columns;
  c.at.push(at);
  c.rps.push(row.rps);
  c.errorsPerS.push(row.errorsPerS);
  c.p50Ms.push(row.p50Ms);
  c.p99Ms.push(row.p99Ms);
  c.workers.push(row.workers);
  c.inFlight.push(row.inFlight);
  c.queued.push(row.queued);
  while (c.at.length > 0 && c.at[0] < at - HISTORY_S) for (const column of Object.values(c)) column.shift();
  drawCharts();
}

// ---- tables -------------------------------------------------------------------------------------
function rowFor(cache, key, cells, make) {
  let tr = cache.get(key);
  if (!tr) {
    tr = document.createElement('tr');
    for (let i = 0; i < cells; i++) tr.append(document.createElement('td'));
    make?.(tr);
    cache.set(key, tr);
  }
  return tr;
}

/** Puts exactly `rows` in `tbody`, moving only when the order changed; forgets rows no longer wanted. */
function place(tbody, rows, cache) {
  const current = tbody.children;
  const same = current.length === rows.length && rows.every((r, i) => current[i] === r);
  if (!same) tbody.replaceChildren(...rows);
  if (cache.size > PAGE_ROWS * 4) {
    const kept = new Set(rows);
    for (const [key, tr] of cache) if (!kept.has(tr)) cache.delete(key);
  }
}

function paged(kind, items) {
  const pages = Math.max(1, Math.ceil(items.length / PAGE_ROWS));
  state.pages[kind] = Math.min(state.pages[kind], pages - 1);
  setText($(`${kind}-page`), `page ${state.pages[kind] + 1} of ${pages}`);
  return items.slice(state.pages[kind] * PAGE_ROWS, (state.pages[kind] + 1) * PAGE_ROWS);
}

function outcomesText(outcomes) {
  return Object.entries(outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${count(n)}`)
    .join(', ');
}

function renderServices(snapshot) {
  const filter = $('services-filter').value.trim().toLowerCase();
  const all = snapshot.services.filter((s) => s.broker === state.broker && (filter === '' || s.name.toLowerCase().includes(filter)));
  setText($('services-count'), `(${all.length})`);
  const rows = paged('services', all).map((s) => {
    const tr = rowFor(state.rows.services, s.name, 11, (row) => (row.dataset.service = s.name));
    const values = [s.name, String(s.workers), String(s.capacity), String(s.inFlight), String(s.queued), fmt(s.rps), fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.queueP50Ms), fmt(s.errorsPerS), outcomesText(s.outcomes)];
    values.forEach((v, i) => setText(tr.children[i], v));
    const selected = state.chartKey === `service:${s.name}` ? 'true' : 'false';
    if (tr.getAttribute('aria-selected') !== selected) tr.setAttribute('aria-selected', selected);
    return tr;
  });
  place($('services').tBodies[0], rows, state.rows.services);
}

/** Models with versions, else services; a worker offering hundreds shows a few and the count. */
function modelsText(w) {
  const items = w.models && w.models.length > 0 ? w.models.map((m) => `${m.name} ${m.versions.join(',')}`) : w.services;
  return items.length <= 4 ? items.join(', ') : `${items.slice(0, 3).join(', ')} and ${items.length - 3} more`;
}

function renderWorkers(snapshot) {
  const filter = $('workers-filter').value.trim().toLowerCase();
  const all = snapshot.workers
    .filter((w) => state.broker === ALL || w.broker === state.broker)
    .filter((w) => filter === '' || `${w.host} ${w.kind} ${w.pid} ${modelsText(w)}`.toLowerCase().includes(filter))
    .sort((a, b) => a.host.localeCompare(b.host) || a.kind.localeCompare(b.kind) || (a.pid ?? 0) - (b.pid ?? 0));
  setText($('workers-count'), `(${all.length} on ${new Set(all.map((w) => w.host)).size} host(s))`);
  const rows = [];
  let host;
  for (const w of paged('workers', all)) {
    if (w.host !== host) {
      host = w.host;
      const header = state.rows.hosts.get(host) ?? document.createElement('tr');
      if (!state.rows.hosts.has(host)) {
        header.className = 'host';
        const th = document.createElement('th');
        th.colSpan = 9;
        th.scope = 'rowgroup';
        header.append(th);
        state.rows.hosts.set(host, header);
      }
      setText(header.firstChild, `${host}: ${all.filter((x) => x.host === host).length} worker(s)`);
      rows.push(header);
    }
    const tr = rowFor(state.rows.workers, `${w.broker} ${w.id}`, 9, (row) => {
      row.dataset.worker = w.id;
      row.dataset.pid = String(w.pid);
    });
    const values = [w.host, w.kind, String(w.pid ?? '?'), modelsText(w), String(w.capacity), String(w.inFlight), `${count(w.lastSeenMs)} ms ago`, w.draining ? 'draining' : 'serving', w.broker];
    values.forEach((v, i) => setText(tr.children[i], v));
    tr.classList.toggle('draining', w.draining === true);
    rows.push(tr);
  }
  place($('workers').tBodies[0], rows, state.rows.workers);
}

function renderTotals(snapshot) {
  const total = snapshot.totals.find((t) => t.broker === state.broker);
  if (total) {
    setText($('total-workers'), String(total.workers));
    setText($('total-rps'), fmt(total.rps));
    setText($('total-answered'), count(Object.values(total.outcomes).reduce((a, b) => a + b, 0)));
    setText($('total-p50'), total.p50Ms === null ? '–' : `${fmt(total.p50Ms)} ms`);
    setText($('total-p99'), total.p99Ms === null ? '–' : `${fmt(total.p99Ms)} ms`);
    setText($('total-inflight'), String(total.inFlight));
    setText($('total-queued'), String(total.queued));
    setText($('total-errors'), fmt(total.errorsPerS));
  }
  const select = $('broker');
  for (const b of snapshot.brokers) {
    if (![...select.options].some((o) => o.value === b.endpoint)) select.append(new Option(b.endpoint, b.endpoint));
  }
  const list = $('brokers');
  const items = snapshot.brokers.map((b) => {
    const text = b.up
      ? `${b.endpoint}: up, ${b.workers} worker(s), ${b.services} service(s), ${b.lost} lost, ${b.requeues} requeued, ${b.overloaded} overloaded`
      : `${b.endpoint}: not answering (${b.error ?? 'no answer yet'})`;
    let li = list.querySelector(`li[data-broker="${CSS.escape(b.endpoint)}"]`);
    if (!li) {
      li = document.createElement('li');
      li.dataset.broker = b.endpoint;
    }
    setText(li, text);
    li.classList.toggle('down', !b.up);
    return li;
  });
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
}

function renderAutoscale(snapshot) {
  $('autoscale').hidden = snapshot.autoscale.length === 0;
  const list = $('autoscale-kinds');
  const items = snapshot.autoscale.map((a) => {
    let li = list.querySelector(`li[data-kind="${CSS.escape(a.kind)}"]`);
    if (!li) {
      li = document.createElement('li');
      li.dataset.kind = a.kind;
    }
    const last = a.decisions.at(-1);
    const decided = last ? `; last: ${last.direction} ${last.from}→${last.to} at ${new Date(last.at).toLocaleTimeString()} (${last.reason})` : '';
    setText(li, `${a.kind}: ${a.desired} wanted (${a.min}–${a.max}), load ${fmt(a.loadPerCapacity, 2)} per unit of capacity, target ${a.target}${decided}`);
    return li;
  });
  if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
}

function render() {
  const snapshot = state.snapshot;
  if (!snapshot) return;
  setText($('poll'), `${snapshot.pollMs / 1000} s`);
  renderTotals(snapshot);
  renderAutoscale(snapshot);
  renderServices(snapshot);
  renderWorkers(snapshot);
}

// ---- wiring -------------------------------------------------------------------------------------
function connect() {
  const events = new EventSource('/cluster/events');
  events.addEventListener('open', () => setText($('connection'), 'Live.'));
  events.addEventListener('error', () => setText($('connection'), 'Reconnecting…'));
  events.addEventListener('snapshot', (event) => {
    state.snapshot = JSON.parse(event.data);
    render();
    appendPoint(state.snapshot);
    document.body.dataset.ready = 'true';
  });
}

$('broker').addEventListener('change', (event) => {
  state.broker = event.target.value;
  state.rows.services.clear();
  render();
  void loadHistory(state.broker);
});
for (const id of ['services-filter', 'workers-filter']) $(id).addEventListener('input', render);
document.addEventListener('click', (event) => {
  const pager = event.target.closest('[data-pager]');
  if (pager) {
    const kind = pager.dataset.pager;
    state.pages[kind] = Math.max(0, state.pages[kind] + Number(pager.dataset.step));
    render();
    return;
  }
  const row = event.target.closest('tr[data-service]');
  if (row) {
    const key = `service:${row.dataset.service}`;
    void loadHistory(state.chartKey === key ? state.broker : key).then(render);
  }
});

setupCharts();
await loadHistory(ALL);
connect();
