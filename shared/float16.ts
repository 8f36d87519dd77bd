/**
 * IEEE 754 half-precision conversion. Node 20 has no `Float16Array`: onnxruntime-node takes and
 * returns float16 tensors as `Uint16Array` bit patterns, so float16 models need these.
 */

const EXPONENT_SCALE = Array.from({ length: 32 }, (_, e) => 2 ** (e - 15));

/**
 * Converts float32 values to float16 bit patterns, rounding to nearest even (as a cast does in
 * onnxruntime). Overflow becomes ±Infinity, underflow ±0 or a subnormal; NaN stays NaN.
 */
export function float32ToFloat16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (dst.length < src.length) throw new RangeError('float16 destination is shorter than the source');
  // Read the float bits directly: one typed-array view instead of a per-value write and read.
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    const sign = (b >>> 16) & 0x8000;
    const exponent = (b >>> 23) & 0xff;
    let mantissa = b & 0x7fffff;
    if (exponent === 0xff) {
      dst[i] = sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200);
      continue;
    }
    const e = exponent - 112; // rebias 127 -> 15
    if (e >= 0x1f) {
      dst[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      // Subnormal half (or zero): shift the mantissa, with its implicit leading 1, into place.
      if (e < -10) {
        dst[i] = sign;
        continue;
      }
      mantissa |= 0x800000;
      const shift = 14 - e;
      let half = mantissa >>> shift;
      const rest = mantissa & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
      dst[i] = sign | half;
      continue;
    }
    let half = (e << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
    if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
    dst[i] = sign | half;
  }
  return dst;
}

/** Converts one float16 bit pattern to a number. */
export function float16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * EXPONENT_SCALE[exponent]!;
}

/** Converts float16 bit patterns to float32 values. */
export function float16ToFloat32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  if (dst.length < src.length) throw new RangeError('float32 destination is shorter than the source');
  for (let i = 0; i < src.length; i++) dst[i] = float16BitsToNumber(src[i]!);
  return dst;
}
