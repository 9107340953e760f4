// A stand-in for the host's two imports, `sinkhost:plugin/http@0.1.0` and
// `sinkhost:plugin/log@0.1.0`, so sinkhost.js runs under plain Node:
// register.js resolves both specifiers to this module. It records what the
// helper sends and logs, and answers with what a test sets.
//
// Like componentize-js's bindings, it builds what the host hands to a plugin
// (messages, responses, http-errors) in a realm of its own (a `node:vm`
// context): their objects, arrays and Uint8Arrays fail `instanceof` and
// `Object.prototype` checks made with the plugin's globals.

import vm from 'node:vm';

/** @typedef {import('sinkhost:plugin/http@0.1.0').Request} Request */
/** @typedef {import('sinkhost:plugin/http@0.1.0').Response} Response */
/** @typedef {import('sinkhost:plugin/http@0.1.0').HttpError} HttpError */
/** @typedef {import('sinkhost:plugin/types@0.1.0').Message} Message */

const bindings = vm.runInNewContext(`({
  pairs: (list) => Array.from(list, ([name, value]) => [name, value]),
  bytes: (data) => new Uint8Array(data),
  object: (fields) => ({ ...fields }),
  error: (variant) => {
    // The bindings' ComponentError: the variant is the payload.
    const err = new Error(String(variant) + ' (see error.payload)');
    Object.defineProperty(err, 'payload', { value: { ...variant }, enumerable: true });
    return err;
  },
})`);

/** Every request `send` got and every `[level, message]` `log` got, in order. */
export const calls = { sent: /** @type {Request[]} */ ([]), logged: /** @type {string[][]} */ ([]) };

/** @type {(req: Request) => Response} */
let answer = () => response(200);

/** Answers the next `send`s with `fn(request)`; `fn` may throw `httpError(...)`. */
export function answerWith(/** @type {(req: Request) => Response} */ fn) {
  answer = fn;
}

/** Forgets the calls and answers 200 again. */
export function reset() {
  calls.sent.length = 0;
  calls.logged.length = 0;
  answer = () => response(200);
}

/**
 * A response as the host returns it: lower-case header names, a Uint8Array body.
 * @param {number} status
 * @param {Array<[string, string]>} [headers]
 * @param {string} [body]
 * @returns {Response}
 */
export function response(status, headers = [], body = '') {
  return bindings.object({ status, headers: bindings.pairs(headers), body: bindings.bytes(new TextEncoder().encode(body)) });
}

/**
 * A message as the host delivers it: `payload` (a string is UTF-8 encoded, an
 * array taken as bytes), otherwise a first delivery (id `nats-msg-1`,
 * published 2026-04-21T08:09:50Z, attempt 1 of 4) with `fields` replacing any of that.
 * @param {string | number[] | Uint8Array} payload
 * @param {Partial<Message>} [fields]
 * @returns {Message}
 */
export function message(payload, fields = {}) {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  return bindings.object({
    subject: 'order.completed',
    id: 'nats-msg-1',
    publishedMs: 1_776_758_990_000n,
    attempt: 1,
    maxAttempts: 4,
    ...fields,
    payload: bindings.bytes(bytes),
    headers: bindings.pairs(fields.headers ?? []),
  });
}

/** What componentize-js throws for the `err` side of `send`'s result. @param {HttpError} variant */
export function httpError(variant) {
  return bindings.error(variant);
}

/** Any value built in the bindings' realm, e.g. `foreign('new ArrayBuffer(2)')`. @param {string} code */
export function foreign(code) {
  return vm.runInNewContext(code);
}

/** @param {Request} req */
export function send(req) {
  calls.sent.push(req);
  return answer(req);
}

/** @param {string} level @param {string} message */
export function log(level, message) {
  calls.logged.push([level, message]);
}
