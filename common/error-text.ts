/**
 * The message of a failure worth showing an operator. Network failures often come wrapped: fetch throws
 * "fetch failed" with the socket error (ECONNREFUSED, ETIMEDOUT, ...) as its `cause`, which is what says what
 * happened. Pure; safe to call from anywhere.
 */

/** The cause's code and message when the error has a cause, else the error's own message. */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as NodeJS.ErrnoException | undefined;
  if (cause?.message === undefined) return err.message;
  return cause.code !== undefined ? `${cause.code} ${cause.message}` : cause.message;
}
