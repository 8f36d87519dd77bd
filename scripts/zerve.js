#!/usr/bin/env node
// `npx zerve`: runs the TypeScript CLI through tsx, so nothing needs building.
import { register } from 'tsx/esm/api';

register();
await import('./zerve.ts');
