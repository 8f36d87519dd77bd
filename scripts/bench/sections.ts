/**
 * Every bench section, in the order they run and are reported; a section's place here is its table
 * number. Training runs last, on a machine the other sections no longer load.
 */
import { autoscaleSection } from './autoscale-section.ts';
import type { BenchSection } from './bench-section.ts';
import { brokerSection } from './broker-section.ts';
import { curveSection } from './curve-section.ts';
import { failoverSection } from './failover-section.ts';
import { inferenceSection } from './inference-section.ts';
import { metricsSection } from './metrics-overhead.ts';
import { modelsSection } from './models-section.ts';
import { roundsSection } from './rounds-section.ts';
import { storeSection } from './store-section.ts';
import { trainingSection } from './training-section.ts';

export const SECTIONS: readonly BenchSection[] = [
  roundsSection,
  inferenceSection,
  brokerSection,
  metricsSection,
  curveSection,
  modelsSection,
  failoverSection,
  storeSection,
  trainingSection,
  autoscaleSection,
];
