/**
 * Z85 (ZeroMQ RFC 32), the text form of CURVE keys: 32-byte keys are 40 characters. zeromq.js gives
 * keys only as Z85 text, while node:crypto (X25519) and file checks need the bytes.
 */
const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const VALUES = new Map([...ALPHABET].map((c, i) => [c, i]));

/** Encodes bytes (a multiple of 4 long) as Z85. */
export function z85Encode(bytes: Buffer): string {
  if (bytes.length % 4 !== 0) throw new RangeError('Z85 encodes whole 4-byte groups');
  let text = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = bytes.readUInt32BE(i);
    let group = '';
    for (let j = 0; j < 5; j++) {
      group = ALPHABET[value % 85]! + group;
      value = Math.floor(value / 85);
    }
    text += group;
  }
  return text;
}

/** Decodes Z85 text (a multiple of 5 long); undefined when it is not valid Z85. */
export function z85Decode(text: string): Buffer | undefined {
  if (text.length % 5 !== 0) return undefined;
  const bytes = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = VALUES.get(text[i + j]!);
      if (digit === undefined) return undefined;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return undefined;
    bytes.writeUInt32BE(value, (i / 5) * 4);
  }
  return bytes;
}
