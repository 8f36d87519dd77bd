import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ZerveError } from '../shared/errors.ts';
import { ImageDecoder } from '../workers/inference/image-decoder.ts';
import type { DecodeSpec } from '../shared/model-exchange/model-config.ts';
import { readImageHeader } from '../workers/inference/image-header.ts';
import { image, pngBomb } from './fixtures/inference-models.ts';

const RED = { r: 255, g: 0, b: 0 };
const BLUE = { r: 0, g: 0, b: 255 };

function spec(overrides: Partial<DecodeSpec> = {}): DecodeSpec {
  return { width: 4, height: 4, resize: 'fill', channels: 'rgb', range: [0, 255], layout: 'NCHW', background: 'white', ...overrides };
}

function solid(width: number, height: number, background: { r: number; g: number; b: number; alpha?: number }): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 4, background: { alpha: 1, ...background } } }).png().toBuffer();
}

/** Value of channel `c` at (x, y) of an NCHW tensor without batch. */
function at(data: Float32Array, s: DecodeSpec, c: number, x: number, y: number): number {
  return data[c * s.width * s.height + y * s.width + x]!;
}

describe('inference image decoder', () => {
  let decoder: ImageDecoder;

  beforeEach(() => {
    decoder = new ImageDecoder();
  });

  it('puts channels in BGR order when asked', async () => {
    const s = spec({ channels: 'bgr' });
    const { data } = await decoder.decode(await solid(4, 4, RED), s);
    assert.equal(at(data, s, 0, 1, 1), 0);
    assert.equal(at(data, s, 2, 1, 1), 255);
  });

  it('lays out NHWC tensors channel-last', async () => {
    const { data } = await decoder.decode(await solid(4, 4, RED), spec({ layout: 'NHWC' }));
    assert.deepEqual([...data.subarray(0, 6)], [255, 0, 0, 255, 0, 0]);
  });

  it('applies range, then mean and std', async () => {
    const s = spec({ range: [0, 1], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
    const { data } = await decoder.decode(await solid(4, 4, { r: 255, g: 255, b: 0 }), s);
    assert.equal(at(data, s, 0, 0, 0), 2);
    assert.equal(at(data, s, 2, 0, 0), -2);
    const grey = await decoder.decode(await solid(4, 4, { r: 255, g: 255, b: 255 }), spec({ channels: 'grey', range: [-1, 1] }));
    assert.ok(grey.data.every((v) => v === 1));
    assert.equal(grey.data.length, 16);
  });

  it('flattens transparency onto white for colour and onto black for grey', async () => {
    const clear = await solid(4, 4, { r: 0, g: 0, b: 0, alpha: 0 });
    assert.ok((await decoder.decode(clear, spec())).data.every((v) => v === 255));
    assert.ok((await decoder.decode(clear, spec({ channels: 'grey', background: 'black' }))).data.every((v) => v === 0));
  });

  it('follows the EXIF orientation', async () => {
    // 20x10, red left half, blue right half, stored with orientation 6 (display rotated 90° clockwise).
    const left = await sharp({ create: { width: 10, height: 10, channels: 3, background: RED } }).png().toBuffer();
    const jpeg = await sharp({ create: { width: 20, height: 10, channels: 3, background: BLUE } })
      .composite([{ input: left, left: 0, top: 0 }])
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const s = spec({ width: 10, height: 20 });
    const { data, sourceWidth, sourceHeight } = await decoder.decode(jpeg, s);
    assert.deepEqual([sourceWidth, sourceHeight], [20, 10]);
    assert.ok(at(data, s, 0, 8, 3) > 200 && at(data, s, 2, 8, 3) < 60, 'top is red');
    assert.ok(at(data, s, 2, 8, 16) > 200 && at(data, s, 0, 8, 16) < 60, 'bottom is blue');
  });

  it('letterboxes with contain and crops with cover', async () => {
    const wide = await solid(20, 10, RED);
    const s = spec({ width: 10, height: 10, resize: 'contain' });
    const contained = await decoder.decode(wide, s);
    assert.equal(at(contained.data, s, 1, 5, 0), 255, 'white bar on top');
    assert.equal(at(contained.data, s, 1, 5, 5), 0, 'red in the middle');
    const covered = await decoder.decode(wide, { ...s, resize: 'cover' });
    assert.ok(covered.data.subarray(100, 200).every((v) => v === 0), 'no white anywhere');
  });

  it('shrinks a 1600x1600 JPEG to 224x224', async () => {
    const s = spec({ width: 224, height: 224 });
    const decoded = await decoder.decode(image('kitten-1600.jpg'), s);
    assert.equal(decoded.data.length, 3 * 224 * 224);
    assert.equal(decoded.format, 'jpeg');
    assert.deepEqual([decoded.sourceWidth, decoded.sourceHeight], [1600, 1600]);
  });

  it('keeps the event loop free while it decodes', async () => {
    // A timer set after the decodes start fires before they end only if decoding runs off the loop.
    const events: string[] = [];
    const s = spec({ width: 224, height: 224 });
    const decodes = Promise.all(Array.from({ length: 8 }, () => decoder.decode(image('kitten-1600.jpg'), s)));
    const timer = setTimeout(() => events.push('timer'), 0);
    await decodes;
    events.push('decoded');
    clearTimeout(timer);
    assert.deepEqual(events, ['timer', 'decoded']);
  });

  it('enforces maxInputPixels and maxImageBytes from its options', async () => {
    const small = new ImageDecoder({ maxInputPixels: 1000, maxImageBytes: 60_000 });
    const code = (err: unknown) => (err as ZerveError).code;
    await assert.rejects(small.decode(await solid(40, 40, RED), spec()), (err) => code(err) === 'IMAGE_TOO_LARGE');
    await assert.rejects(small.decode(image('kitten-1600.jpg'), spec()), (err) => code(err) === 'IMAGE_TOO_LARGE');
    await small.decode(await solid(20, 20, RED), spec());
    // From the header alone: a small bomb (one row of pixel data) shows a decode would be BAD_IMAGE.
    await assert.rejects(decoder.decode(pngBomb(300, 300), spec()), (err) => code(err) === 'BAD_IMAGE');
    await assert.rejects(decoder.decode(pngBomb(), spec()), (err) => code(err) === 'IMAGE_TOO_LARGE');
    assert.throws(() => new ImageDecoder({ maxImageBytes: 0 }), (err) => code(err) === 'BAD_CONFIG');
  });
});

describe('image header reader', () => {
  it('reads the same format and stored size as sharp for PNG and JPEG, baseline, progressive and rotated', async () => {
    const rotated = await sharp({ create: { width: 20, height: 10, channels: 3, background: RED } }).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const samples: [string, Buffer][] = [
      ['kitten.png', image('kitten.png')],
      ['kitten-1600.jpg', image('kitten-1600.jpg')],
      ['fish.png', image('fish.png')],
      ['digit.png', image('digit.png')],
      ['progressive 33x17 JPEG', await sharp({ create: { width: 33, height: 17, channels: 3, background: BLUE } }).jpeg({ progressive: true }).toBuffer()],
      ['20x10 JPEG with EXIF orientation 6', rotated],
      ['grey 7x5 PNG', await sharp({ create: { width: 7, height: 5, channels: 3, background: BLUE } }).greyscale().png().toBuffer()],
    ];
    for (const [name, bytes] of samples) {
      const metadata = await sharp(bytes).metadata();
      assert.deepEqual(readImageHeader(bytes), { format: metadata.format, width: metadata.width, height: metadata.height }, name);
    }
  });

  it('leaves other formats and unreadable headers to sharp (undefined)', async () => {
    const webp = await sharp({ create: { width: 4, height: 4, channels: 3, background: RED } }).webp().toBuffer();
    const jpeg = image('kitten-1600.jpg');
    for (const [name, bytes] of [
      ['WebP', webp],
      ['empty', Buffer.alloc(0)],
      ['JPEG cut inside its headers', jpeg.subarray(0, 40)],
      ['JPEG start marker then junk', Buffer.from([0xff, 0xd8, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04])],
      ['PNG signature only', image('kitten.png').subarray(0, 8)],
      ['PNG whose IHDR fails its CRC', Buffer.from(image('kitten.png').subarray(0, 100)).fill(7, 20)],
      ['text', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')],
    ] as const) {
      assert.equal(readImageHeader(bytes), undefined, name);
    }
  });

  it('answers BAD_IMAGE through the decoder for a JPEG whose header reads but whose data is cut', async () => {
    const jpeg = image('kitten-1600.jpg');
    const cut = jpeg.subarray(0, 2000);
    assert.deepEqual(readImageHeader(cut), { format: 'jpeg', width: 1600, height: 1600 });
    await assert.rejects(new ImageDecoder().decode(cut, spec({ width: 224, height: 224 })), (err) => (err as ZerveError).code === 'BAD_IMAGE');
  });
});
