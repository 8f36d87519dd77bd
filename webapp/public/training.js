// The training page: plain ES modules, no build step, no third-party code. Charts are SVG drawn here
// (training/charts.js); the page's parts are datasets, the form, a training's progress and the runs table.
import { loadDatasets } from './training/datasets.js';
import { loadBackbones, suggestFamily, syncForm } from './training/form.js';
import { drawLive, resumeSavedJob } from './training/progress.js';
import { loadRuns } from './training/runs-table.js';

async function init() {
  syncForm();
  drawLive();
  await Promise.all([loadDatasets(), loadBackbones()]);
  suggestFamily();
  await loadRuns();
  // A training this tab started before a reload: follow it again.
  resumeSavedJob();
  document.body.dataset.ready = 'true';
}

void init();
