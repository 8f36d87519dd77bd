import assert from 'node:assert/strict';
import { float16BitsToNumber, float16ToFloat32, float32ToFloat16 } from '../shared/float16.ts';

describe('inference float16 conversion', () => {
  it('round-trips every float16 value exactly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToFloat16(float16ToFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) assert.ok(Number.isNaN(float16BitsToNumber(back[h]!)));
      else assert.equal(back[h], h, `0x${h.toString(16)}`);
    }
  });

  it('rounds to nearest even, overflows to Infinity and underflows to zero', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00],
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000],
      [1.5 * 2 ** -25, 0x0001],
      [1e-10, 0x0000],
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [255, 0x5bf8],
      [-0, 0x8000],
    ];
    const bits = float32ToFloat16(new Float32Array(cases.map(([value]) => value)));
    cases.forEach(([value, expected], i) => assert.equal(bits[i], expected, `${value}`));
    assert.ok(Number.isNaN(float16BitsToNumber(float32ToFloat16(new Float32Array([NaN]))[0]!)));
  });

  it('converts a subarray that does not start at offset 0', () => {
    const whole = new Float32Array([9, 1, 2, 0.5]);
    assert.deepEqual([...float16ToFloat32(float32ToFloat16(whole.subarray(1)))], [1, 2, 0.5]);
  });
});
