/**
 * Format and stored size of a JPEG or PNG read from its first bytes in JavaScript: the decoder's
 * checks before decoding (format accepted, pixel limit) without a sharp `metadata()` call, which
 * costs about 1 ms of CPU per image (a second pipeline: options marshalled on the main thread, one
 * more thread-pool hop, the header parsed twice). Other formats, and anything this does not
 * recognise, return undefined so the caller asks sharp.
 */
import { crc32 } from 'node:zlib';

export interface ImageHeader {
  format: 'jpeg' | 'png';
  width: number;
  height: number;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The header of a PNG or baseline/progressive JPEG, or undefined (another format, or unreadable). */
export function readImageHeader(image: Uint8Array): ImageHeader | undefined {
  if (image.length >= 24 && PNG_SIGNATURE.equals(image.subarray(0, 8))) return pngHeader(image);
  if (image.length >= 4 && image[0] === 0xff && image[1] === 0xd8 && image[2] === 0xff) return jpegHeader(image);
  return undefined;
}

function pngHeader(image: Uint8Array): ImageHeader | undefined {
  // The first chunk must be IHDR: length 13, then width and height as big-endian 32-bit integers,
  // and its CRC must match (as libspng checks), so corrupt bytes stay BAD_IMAGE, not a size.
  if (image.length < 33) return undefined;
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint32(8) !== 13 || view.getUint32(12) !== 0x49484452) return undefined;
  if (crc32(image.subarray(12, 29)) !== view.getUint32(29)) return undefined;
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  return width > 0 && height > 0 ? { format: 'png', width, height } : undefined;
}

/** Start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC). */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function jpegHeader(image: Uint8Array): ImageHeader | undefined {
  // Walks the marker segments after SOI (each: FF, marker, 16-bit length including itself) to the frame header.
  let at = 2;
  while (at + 4 <= image.length) {
    if (image[at] !== 0xff) return undefined;
    const marker = image[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    // Standalone markers carry no length; SOS or EOI before a frame header means no frame.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return undefined;
    const length = (image[at + 2]! << 8) | image[at + 3]!;
    if (length < 2) return undefined;
    if (isStartOfFrame(marker)) {
      // Frame header: length, precision (1 byte), height, width (16-bit each).
      if (at + 9 > image.length) return undefined;
      const height = (image[at + 5]! << 8) | image[at + 6]!;
      const width = (image[at + 7]! << 8) | image[at + 8]!;
      return width > 0 && height > 0 ? { format: 'jpeg', width, height } : undefined;
    }
    at += 2 + length;
  }
  return undefined;
}
