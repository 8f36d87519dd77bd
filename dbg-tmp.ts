import { NetnsLab } from './test/helpers/netns.ts';
import { generateKeyFiles } from './shared/curve-keys.ts';
import { ZerveClient } from './shared/client.ts';
import { join } from 'node:path';
const lab = await NetnsLab.create(['a']);
const keys = join(lab.dir, 'keys');
await generateKeyFiles('broker', keys);
const env = { ...process.env, ZERVE_LOG_LEVEL: 'info', ZERVE_HEARTBEAT_INTERVAL_MS: '200' };
const args = ['broker', '--frontend', lab.ipc('frontend'), '--backend', lab.tcp(lab.broker, 5556), '--curve-key', join(keys, 'broker.key'), '--authorized-workers', keys];
let p = lab.spawn(lab.broker, args, env);
const c = new ZerveClient({ broker: lab.ipc('frontend'), timeoutMs: 3000, retries: 5 });
console.log(await c.workers());
await p.kill('SIGKILL');
const t = Date.now();
p = lab.spawn(lab.broker, args, env);
try { console.log(await c.workers(), Date.now() - t); } catch (e) { console.log('ERR', String(e), Date.now() - t); }
const c2 = new ZerveClient({ broker: lab.ipc('frontend'), timeoutMs: 3000, retries: 5 });
try { console.log('fresh client', await c2.workers(), Date.now() - t); } catch (e) { console.log('ERR', String(e)); }
console.log('exit', p.child.exitCode, p.stdout.slice(0, 3000), p.stderr.slice(0, 3000));
await c.close(); await c2.close();
await lab.close();
