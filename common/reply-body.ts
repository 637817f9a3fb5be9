/**
 * Reading the body of an HTTP answer from another process (a replica's answer to a notice) with a size limit: a
 * peer that streams without end, or a large error page, must not grow our memory.
 *
 * Concurrency: each call owns its response body; nothing is shared.
 */

/** What a size-limited read found: the text, or that the body went past the limit (it is then cancelled). */
export type CappedText = { readonly text: string; readonly tooLarge: false } | { readonly tooLarge: true };

/**
 * Reads `res`'s body as UTF-8 up to `maxBytes`; past that it stops reading, cancels the body and says so. A
 * Content-Length over the limit is refused before any byte is read.
 */
export async function readCappedText(res: Response, maxBytes: number): Promise<CappedText> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes || res.body === null) {
    await res.body?.cancel().catch(() => undefined);
    return declared > maxBytes ? { tooLarge: true } : { text: '', tooLarge: false };
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return { tooLarge: true };
    }
    chunks.push(value);
  }
  return { text: Buffer.concat(chunks).toString('utf8'), tooLarge: false };
}
