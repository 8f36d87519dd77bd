/**
 * Hyperparameter search spaces from `key=...` strings:
 * - `key=v1,v2,v3`: a list of choices (numbers where they parse, else strings, e.g.
 *   `hidden=128,256,128x64`);
 * - `key=lo:hi`: a range, only for random search. Sampled log-uniformly for `learningRate` and
 *   `l2` (scale parameters: 1e-4..1e-2 should be explored per decade, not mostly near 1e-2),
 *   as integers when both bounds are integers (`batchSize=32:256`), otherwise uniformly.
 * Grid search takes every combination of the choices, in key order then value order; random
 * search draws `samples` configurations from a seeded generator.
 */
import { ZerveError } from './errors.ts';
import { Rng } from './rng.ts';
import type { ParamSet, ParamValue, SearchRequest } from './training-request.ts';

export type ParamSpace = { kind: 'choice'; values: ParamValue[] } | { kind: 'range'; lo: number; hi: number };

export type SearchSpace = Record<string, ParamSpace>;

/** Keys sampled log-uniformly from a range. */
export const LOG_UNIFORM_KEYS: readonly string[] = ['learningRate', 'l2'];

const KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]*$/;
const MAX_GRID = 10_000;

function parseValue(text: string): ParamValue {
  const trimmed = text.trim();
  const n = Number(trimmed);
  return trimmed !== '' && Number.isFinite(n) ? n : trimmed;
}

/** Parses `['learningRate=0.001,0.01', 'l2=1e-5:1e-3']` into a search space. */
export function parseSearchSpace(specs: string[]): SearchSpace {
  const space: SearchSpace = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const key = eq < 0 ? '' : spec.slice(0, eq).trim();
    const body = eq < 0 ? '' : spec.slice(eq + 1).trim();
    if (!KEY_PATTERN.test(key) || body === '') throw new ZerveError('BAD_REQUEST', `search parameter must be key=v1,v2 or key=lo:hi; got ${JSON.stringify(spec)}`);
    if (Object.hasOwn(space, key)) throw new ZerveError('BAD_REQUEST', `search parameter ${key} given twice`);
    const range = /^([^:,]+):([^:,]+)$/.exec(body);
    if (range) {
      const lo = Number(range[1]);
      const hi = Number(range[2]);
      if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo > hi) throw new ZerveError('BAD_REQUEST', `range of ${key} must be lo:hi with lo <= hi; got ${body}`);
      if (LOG_UNIFORM_KEYS.includes(key) && lo <= 0) throw new ZerveError('BAD_REQUEST', `range of ${key} is log-uniform and must be positive`);
      space[key] = { kind: 'range', lo, hi };
    } else {
      const values = body.split(',').map(parseValue);
      if (values.some((v) => v === '')) throw new ZerveError('BAD_REQUEST', `empty value in ${JSON.stringify(spec)}`);
      space[key] = { kind: 'choice', values };
    }
  }
  return space;
}

/** Every combination of the choices (ranges are refused: they need random search). */
export function gridSearch(space: SearchSpace): ParamSet[] {
  let sets: ParamSet[] = [{}];
  for (const [key, param] of Object.entries(space)) {
    if (param.kind === 'range') throw new ZerveError('BAD_REQUEST', `grid search needs a list of values for ${key}, not a range`);
    sets = sets.flatMap((set) => param.values.map((value) => ({ ...set, [key]: value })));
    if (sets.length > MAX_GRID) throw new ZerveError('BAD_REQUEST', `grid has more than ${MAX_GRID} combinations`);
  }
  return sets;
}

/** `samples` seeded draws: choices uniformly, ranges as documented above. */
export function randomSearch(space: SearchSpace, samples: number, seed: number): ParamSet[] {
  if (!Number.isInteger(samples) || samples < 1 || samples > MAX_GRID) throw new ZerveError('BAD_REQUEST', `samples must be an integer from 1 to ${MAX_GRID}`);
  const rng = new Rng(seed);
  const sets: ParamSet[] = [];
  for (let s = 0; s < samples; s++) {
    const set: ParamSet = {};
    for (const [key, param] of Object.entries(space)) {
      if (param.kind === 'choice') {
        set[key] = param.values[rng.int(param.values.length)];
      } else if (LOG_UNIFORM_KEYS.includes(key)) {
        set[key] = Math.exp(rng.uniform(Math.log(param.lo), Math.log(param.hi)));
      } else if (Number.isInteger(param.lo) && Number.isInteger(param.hi)) {
        set[key] = param.lo + rng.int(param.hi - param.lo + 1);
      } else {
        set[key] = rng.uniform(param.lo, param.hi);
      }
    }
    sets.push(set);
  }
  return sets;
}

/** The configurations a search request expands to (one empty set when there is nothing to search). */
export function expandSearch(search: SearchRequest | undefined, seed: number): ParamSet[] {
  if (!search || search.params.length === 0) return [{}];
  const space = parseSearchSpace(search.params);
  return search.mode === 'grid' ? gridSearch(space) : randomSearch(space, search.samples ?? 8, seed);
}
