import { crc32 } from 'node:zlib';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * The same picture as other bytes: a PNG gets a tEXt chunk, a JPEG a comment segment, holding `n`.
 * Decoders skip both, so decoding costs the same, but a content hash differs: every variant is a
 * result-cache miss.
 */
export function uniqueImage(image: Buffer, n: number): Buffer {
  const text = Buffer.from(`zerve-bench\u0000${n}`);
  if (image.subarray(0, 8).equals(PNG_SIGNATURE)) {
    const chunk = Buffer.alloc(12 + text.length);
    chunk.writeUInt32BE(text.length, 0);
    chunk.write('tEXt', 4, 'latin1');
    text.copy(chunk, 8);
    chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + text.length)), 8 + text.length);
    const ihdrEnd = 8 + 12 + image.readUInt32BE(8); // the first chunk is IHDR
    return Buffer.concat([image.subarray(0, ihdrEnd), chunk, image.subarray(ihdrEnd)]);
  }
  if (image[0] === 0xff && image[1] === 0xd8) {
    const segment = Buffer.alloc(4 + text.length);
    segment.writeUInt16BE(0xfffe, 0); // COM
    segment.writeUInt16BE(2 + text.length, 2);
    text.copy(segment, 4);
    return Buffer.concat([image.subarray(0, 2), segment, image.subarray(2)]);
  }
  throw new Error('uniqueImage: only PNG and JPEG');
}
