import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import { ZerveError } from '../shared/errors.ts';

/** Form field that carries the image in a multipart upload. */
export const IMAGE_FIELD = 'image';

export interface Upload {
  /** The image bytes, or undefined when the request has no body. */
  image?: Buffer;
  filename?: string;
  mimeType?: string;
}

/** What an upload route takes: the multipart field of the file, and the content types of a raw body. */
export interface UploadKind {
  field: string;
  /** Raw body content types; one ending in `/` takes every subtype (`image/`). */
  rawTypes: readonly string[];
  /** Told to a client that sent neither. */
  hint: string;
  /** The code of an upload over the limit. */
  tooLarge: 'IMAGE_TOO_LARGE' | 'PAYLOAD_TOO_LARGE';
  /** Other, optional file fields a multipart form may carry besides `field` (each under the same byte limit). */
  extraFields?: readonly string[];
}

export const IMAGE_UPLOAD: UploadKind = {
  field: IMAGE_FIELD,
  rawTypes: ['image/', 'application/octet-stream'],
  hint: 'send multipart/form-data with the field "image", or the image bytes with an image/* content type',
  tooLarge: 'IMAGE_TOO_LARGE',
};

/** A file of any kind: `bytes` undefined when the request has no body (or no such field). */
export interface FileUpload {
  bytes?: Buffer;
  filename?: string;
  mimeType?: string;
  /** The kind's `extraFields` that the form carried, by field name. */
  extra?: Record<string, Buffer>;
}

function tooLarge(maxUploadBytes: number, code: UploadKind['tooLarge']): ZerveError {
  return new ZerveError(code, `the upload exceeds the limit of ${maxUploadBytes} bytes`, {
    details: { maxUploadBytes },
  });
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * Reads the image of a request into memory, never more than `maxUploadBytes`: a multipart form with
 * field `image`, or the raw bytes with an `image/*` (or `application/octet-stream`) content type.
 * Past the limit it rejects with IMAGE_TOO_LARGE (the kind's `tooLarge`) at once, while the upload is still arriving; the
 * rest of the body is read and dropped so that the answer reaches the client.
 */
export async function readUpload(req: IncomingMessage, maxUploadBytes: number): Promise<Upload> {
  const { bytes, ...rest } = await readFileUpload(req, maxUploadBytes, IMAGE_UPLOAD);
  return bytes === undefined ? rest : { image: bytes, ...rest };
}

/** `readUpload` for any kind of file (`kind` names the multipart field and the raw content types). */
export function readFileUpload(req: IncomingMessage, maxUploadBytes: number, kind: UploadKind): Promise<FileUpload> {
  if (!hasBody(req)) return Promise.resolve({});
  const declared = Number(req.headers['content-length'] ?? 0);
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const isMultipart = type.startsWith('multipart/form-data');
  // A multipart body has some framing around the file: allow for it before refusing on length alone.
  if (declared > maxUploadBytes + (isMultipart ? 64 * 1024 : 0)) {
    req.resume();
    return Promise.reject(tooLarge(maxUploadBytes, kind.tooLarge));
  }
  if (isMultipart) return readMultipart(req, maxUploadBytes, kind);
  const mimeType = type.split(';')[0]!.trim();
  if (kind.rawTypes.some((t) => (t.endsWith('/') ? mimeType.startsWith(t) : mimeType === t))) {
    return readRaw(req, maxUploadBytes, kind.tooLarge).then((bytes) => ({ bytes, mimeType }));
  }
  req.resume();
  return Promise.reject(new ZerveError('BAD_REQUEST', kind.hint));
}

function readRaw(req: IncomingMessage, maxUploadBytes: number, code: UploadKind['tooLarge']): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxUploadBytes) {
        req.off('data', onData);
        chunks.length = 0;
        req.resume(); // drop the rest; the 413 is sent now
        reject(tooLarge(maxUploadBytes, code));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', (err) => reject(new ZerveError('BAD_REQUEST', 'the upload was interrupted', { cause: err })));
  });
}

function readMultipart(req: IncomingMessage, maxUploadBytes: number, { field, tooLarge: code, extraFields = [] }: UploadKind): Promise<FileUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { fileSize: maxUploadBytes, files: 1 + extraFields.length, fields: 20, fieldSize: 4096, parts: 30 },
      });
    } catch (err) {
      req.resume();
      reject(new ZerveError('BAD_REQUEST', 'malformed multipart/form-data content type', { cause: err }));
      return;
    }
    const upload: FileUpload = {};
    let failed = false;
    const fail = (err: ZerveError) => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    parser.on('file', (name, file, info) => {
      if (name !== field && !extraFields.includes(name)) {
        file.resume();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      file.on('data', (chunk: Buffer) => {
        if (failed) return;
        size += chunk.length;
        chunks.push(chunk);
      });
      file.on('limit', () => {
        chunks.length = 0;
        fail(tooLarge(maxUploadBytes, code)); // busboy drops the rest of the file for us
      });
      file.on('end', () => {
        if (failed) return;
        const bytes = Buffer.concat(chunks, size);
        if (name !== field) {
          upload.extra = { ...upload.extra, [name]: bytes };
          return;
        }
        upload.bytes = bytes;
        upload.filename = info.filename;
        upload.mimeType = info.mimeType;
      });
    });
    parser.on('filesLimit', () => fail(new ZerveError('BAD_REQUEST', extraFields.length === 0 ? 'send one file per request' : `send at most one file per field (${[field, ...extraFields].join(', ')})`)));
    parser.on('close', () => {
      if (!failed) resolve(upload);
    });
    parser.on('error', (err) => {
      req.unpipe(parser);
      req.resume();
      fail(new ZerveError('BAD_REQUEST', 'malformed multipart/form-data body', { cause: err }));
    });
    req.once('error', (err) => fail(new ZerveError('BAD_REQUEST', 'the upload was interrupted', { cause: err })));
    req.pipe(parser);
  });
}
