// Charts of the training page: one SVG line per run, for loss and validation accuracy.
import { el, num, paramsText, pct, svg } from './page.js';

// Distinct colours (Okabe-Ito and Tableau), with dash patterns so that lines differ beyond colour too.
const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#7f3c8d', '#4e79a7', '#b07aa1', '#59a14f'];
const DASHES = ['', '7 4', '2 4', '10 4 2 4'];

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
export class RunCurves {
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
