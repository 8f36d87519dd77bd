/** HTTP test helpers shared by the web app suites: error answers, Server-Sent Events, multipart bodies. */
import assert from 'node:assert/strict';
import type { ErrorCode } from '../../shared/errors.ts';

/** Asserts an error answer: its status, its catalog code, and Retry-After on a 503. */
export function assertError(res: { status: number; headers: Headers; body: any }, status: number, code: ErrorCode): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body.error?.code, code, JSON.stringify(res.body));
  if (status === 503) assert.match(res.headers.get('retry-after') ?? '', /^\d+$/, 'a 503 carries Retry-After');
}

/** Reads a Server-Sent Events stream to its end. */
export async function readEvents(url: string): Promise<{ event: string; id?: string; data: any }[]> {
  const response = await fetch(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => /^event: /m.test(block))
    .map((block) => {
      const field = (name: string) => block.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1];
      const id = field('id');
      return { event: field('event')!, ...(id === undefined ? {} : { id }), data: JSON.parse(field('data')!) };
    });
}

/** A POST of one file as multipart/form-data. */
export function form(file: { field: string; name: string; type: string; body: Buffer | string }): RequestInit {
  const data = new FormData();
  data.append(file.field, new Blob([typeof file.body === 'string' ? file.body : new Uint8Array(file.body)], { type: file.type }), file.name);
  return { method: 'POST', body: data };
}
