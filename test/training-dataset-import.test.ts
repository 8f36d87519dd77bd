import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatasetStore } from '../workers/training/dataset-store.ts';
import { makePng, makeTarGz, makeZip, type ArchiveEntry } from './fixtures/training-archives.ts';
import { hasCode } from './helpers/error-code.ts';

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

describe('training dataset import', function () {
  this.timeout(20_000);
  let root: string;
  let data: string;
  let store: DatasetStore;
  let classEntries: ArchiveEntry[];

  before(async () => {
    classEntries = [];
    for (let i = 0; i < 4; i++) {
      classEntries.push({ name: `cat/${i}.png`, data: await makePng(i, [200, 120, 40]) });
      classEntries.push({ name: `dog/${i}.png`, data: await makePng(100 + i, [40, 90, 200]) });
    }
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'zerve-training-dataset-'));
    data = join(root, 'data');
    store = new DatasetStore({ data });
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('imports a zip of class folders, listing non-image and corrupt files', async () => {
    const zip = makeZip([
      { name: 'cat/', type: 'dir' },
      ...classEntries,
      { name: 'cat/notes.txt', data: Buffer.from('not an image') },
      { name: 'dog/broken.png', data: Buffer.from('\x89PNG\r\n\x1a\n garbage') },
      { name: '.DS_Store', data: Buffer.from('x') },
      { name: 'readme.png', data: await makePng(999, [1, 2, 3]) },
    ]);
    const manifest = await store.importArchive(zip);
    assert.match(manifest.id, /^[0-9a-f]{64}$/);
    assert.deepEqual(manifest.classes, ['cat', 'dog']);
    assert.deepEqual(manifest.counts, { cat: { train: 4, test: 0 }, dog: { train: 4, test: 0 } });
    const reasons = Object.fromEntries(manifest.skipped.map((s) => [s.path, s.reason]));
    assert.deepEqual(reasons, {
      'cat/notes.txt': 'not-an-image',
      'dog/broken.png': 'corrupt-image',
      '.DS_Store': 'hidden',
      'readme.png': 'not-in-class-folder',
    });
    const dataset = await store.open(manifest.id);
    const first = await dataset.read(0);
    assert.equal(first.kind, 'encoded');
  });

  it('gives the same bytes the same id and stores them once', async () => {
    const zip = makeZip(classEntries);
    const a = await store.importArchive(zip);
    const b = await store.importArchive(Buffer.from(zip));
    assert.equal(a.id, b.id);
    assert.deepEqual(await readdir(join(data, 'datasets')), [a.id]);
    assert.equal((await readdir(join(data, 'datasets', a.id, 'images'))).length, 8);
    assert.deepEqual(await store.list(), ['mnist', a.id]);
  });

  it('imports a tar.gz with a top folder and an explicit test set', async () => {
    const entries: ArchiveEntry[] = [
      ...classEntries.map((e) => ({ ...e, name: `pets/${e.name}` })),
      { name: 'pets/test/cat/t0.png', data: await makePng(50, [210, 110, 50]) },
      { name: 'pets/test/dog/t0.png', data: await makePng(150, [50, 100, 210]) },
      { name: 'pets/test/bird/t0.png', data: await makePng(250, [0, 250, 0]) },
    ];
    const manifest = await store.importArchive(await makeTarGz(entries));
    assert.equal(manifest.source, 'tar.gz');
    assert.equal(manifest.explicitTest, true);
    assert.deepEqual(manifest.counts, { cat: { train: 4, test: 1 }, dog: { train: 4, test: 1 } });
    assert.deepEqual(manifest.skipped.map((s) => s.reason), ['unknown-test-class']);
  });

  it('imports a folder of class folders, skipping symlinks and empty classes', async () => {
    const folder = join(root, 'src');
    for (const e of classEntries) {
      await mkdir(join(folder, e.name, '..'), { recursive: true });
      await writeFile(join(folder, e.name), e.data as Buffer);
    }
    await mkdir(join(folder, 'fish'));
    await writeFile(join(folder, 'fish', 'empty.jpg'), Buffer.alloc(0));
    await symlink('/etc/passwd', join(folder, 'cat', 'link.png'));
    const manifest = await store.importFolder(folder);
    assert.equal(manifest.source, 'folder');
    assert.deepEqual(manifest.classes, ['cat', 'dog']);
    const reasons = manifest.skipped.map((s) => `${s.path}:${s.reason}`).sort();
    assert.deepEqual(reasons, ['cat/link.png:symlink', 'fish/:empty-class', 'fish/empty.jpg:corrupt-image']);
    assert.equal((await store.importFolder(folder)).id, manifest.id);
  });

  it('skips a symlink entry in a zip and in a tar.gz', async () => {
    const link: ArchiveEntry = { name: 'cat/evil.png', type: 'symlink', linkname: '/etc/passwd' };
    const fromZip = await store.importArchive(makeZip([...classEntries, link]));
    assert.deepEqual(fromZip.skipped, [{ path: 'cat/evil.png', reason: 'symlink' }]);
    const fromTar = await store.importArchive(await makeTarGz([...classEntries, link]));
    assert.deepEqual(fromTar.skipped.map((s) => s.reason), ['symlink']);
  });

  it('refuses an empty archive, a single class, and a corrupt archive', async () => {
    await assert.rejects(store.importArchive(makeZip([])), hasCode('BAD_DATASET'));
    await assert.rejects(store.importArchive(await makeTarGz([])), hasCode('BAD_DATASET'));
    await assert.rejects(store.importArchive(makeZip(classEntries.filter((e) => e.name.startsWith('cat/')))), hasCode('BAD_DATASET'));
    const zip = makeZip(classEntries);
    await assert.rejects(store.importArchive(zip.subarray(0, zip.length - 30)), hasCode('BAD_DATASET'));
    const tgz = await makeTarGz(classEntries);
    await assert.rejects(store.importArchive(tgz.subarray(0, tgz.length >> 1)), hasCode('BAD_DATASET'));
    await assert.rejects(store.importArchive(Buffer.from('just text')), hasCode('BAD_DATASET'));
  });

  it('refuses entries escaping the folder and writes nothing outside the data directory', async () => {
    for (const name of ['../escaped.png', '/abs/escaped.png', 'cat/../../escaped.png']) {
      const entries = [...classEntries, { name, data: await makePng(7, [9, 9, 9]) }];
      await assert.rejects(store.importArchive(makeZip(entries)), hasCode('BAD_DATASET'), `zip ${name}`);
      await assert.rejects(store.importArchive(await makeTarGz(entries)), hasCode('BAD_DATASET'), `tar ${name}`);
    }
    assert.equal(await exists(join(root, 'escaped.png')), false);
    assert.equal(await exists(join(data, 'escaped.png')), false);
    assert.equal(await exists('/abs/escaped.png'), false);
    // Failed imports leave no temporary folders behind.
    assert.deepEqual(await readdir(join(data, 'tmp')), []);
  });

  it('stops an archive that expands past the size limit', async () => {
    const small = new DatasetStore({ data, maxExpandedBytes: 1024 * 1024 });
    const bomb = { name: 'cat/huge.png', data: Buffer.alloc(8 * 1024 * 1024) };
    const zip = makeZip([...classEntries, bomb]);
    assert.ok(zip.length < 100_000, 'the zip compresses well');
    await assert.rejects(small.importArchive(zip), hasCode('BAD_DATASET'));
    await assert.rejects(small.importArchive(await makeTarGz([...classEntries, bomb])), hasCode('BAD_DATASET'));
    const few = new DatasetStore({ data, maxEntries: 3 });
    await assert.rejects(few.importArchive(makeZip(classEntries)), hasCode('BAD_DATASET'));
  });

  it('lists an oversized image as skipped', async () => {
    const tight = new DatasetStore({ data, maxImageBytes: 2000 });
    const big = { name: 'dog/big.png', data: await makePng(5, [1, 1, 1], 64) };
    assert.ok((big.data as Buffer).length > 2000);
    const manifest = await tight.importArchive(makeZip([...classEntries, big]));
    assert.deepEqual(manifest.skipped.map((s) => `${s.path}:${s.reason}`), ['dog/big.png:too-large']);
  });

  it('answers UNKNOWN_DATASET for an id it does not have', async () => {
    await assert.rejects(store.open('0'.repeat(64)), hasCode('UNKNOWN_DATASET'));
    await assert.rejects(store.open('../etc'), hasCode('UNKNOWN_DATASET'));
  });
});
