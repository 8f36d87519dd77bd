// The confusion matrix heatmap and per-class metrics of an experiment's test split.
import { $, api, el, errorText, num, pct } from './page.js';

/** Shows experiment `experimentId`'s test metrics: `known` when the caller has them, else read from the run store. */
export async function showConfusion(experimentId, known) {
  let test = known;
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

