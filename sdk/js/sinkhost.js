// sinkhost.js: the helper a JavaScript sink plugin imports (`import { send,
// outcome } from './sinkhost.js'`). It owns what every plugin would otherwise
// get subtly wrong: building the WIT `http.request` record (the bindings turn a
// string body or a header object into an empty body or no headers without a
// word, so `request` throws a TypeError instead), the delivery policy of a
// webhook (`classify`, `retryAfterMs`, `outcome`), the W3C trace context, and
// the standard JSON envelope. It does not parse a plugin's config: settings are
// each plugin's own.
//
// One file, no dependencies, so a project copies it (`sinkhost plugin new
// --lang js` does) and componentize-js loads it as a relative import. Its
// types are in sinkhost.d.ts beside it; the WIT's are in types/.
//
// Mirrors sdk/src/http.rs, time.rs, envelope.rs and trace_context.rs of the
// Rust SDK: a plugin decides the same way in either language.

import { send as hostSend } from 'sinkhost:plugin/http@0.1.0';
import { log } from 'sinkhost:plugin/log@0.1.0';

/** @typedef {import('sinkhost:plugin/http@0.1.0').Request} Request */
/** @typedef {import('sinkhost:plugin/http@0.1.0').Response} Response */
/** @typedef {import('sinkhost:plugin/http@0.1.0').HttpError} HttpError */
/** @typedef {import('sinkhost:plugin/http@0.1.0').Method} Method */
/** @typedef {import('sinkhost:plugin/types@0.1.0').Message} Message */
/** @typedef {import('sinkhost:plugin/types@0.1.0').Outcome} Outcome */
/** @typedef {import('./sinkhost.js').RequestSpec} RequestSpec */
/** @typedef {import('./sinkhost.js').Sent} Sent */

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'];
const SPEC_FIELDS = ['method', 'url', 'headers', 'body'];
const HTTP_ERRORS = ['timeout', 'connect', 'denied', 'other'];
/** An RFC 9110 token: what a method or a header name may be. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What the host cannot send in a header value: control characters but tab. */
const UNSENDABLE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/** How much of a response body a reject reason and a warning quote. */
const SUMMARY_CHARS = 200;
const U64_MAX = (1n << 64n) - 1n;

/**
 * The WIT `http.request` record for `spec`, checked: anything the host's
 * bindings would silently send as something else is a TypeError naming the
 * field (and, for a header, its name but never its value).
 *
 * - `method`: `'GET'`, `'POST'`, ... (the seven WIT methods, any case) or
 *   another token such as `'PROPFIND'` (sent as `{tag: 'other', val}`), or
 *   already a variant (`{tag: 'post'}`). Required.
 * - `url`: an absolute `http://` or `https://` URL.
 * - `headers`: `[name, value]` pairs in order (a name may repeat) or an object
 *   of string values; names must be HTTP tokens, values strings without line
 *   breaks. Optional.
 * - `body`: a `Uint8Array` (or another ArrayBuffer view), an `ArrayBuffer`, or
 *   a string (sent as UTF-8). Optional: empty when absent. An object is not
 *   serialised for you: `JSON.stringify` it first.
 *
 * @param {RequestSpec} spec
 * @returns {Request}
 */
export function request(spec) {
  if (!isPlainObject(spec)) {
    fail(`request takes {method, url, headers, body}, got ${describe(spec)}`);
  }
  for (const key of Object.keys(spec)) {
    if (!SPEC_FIELDS.includes(key)) {
      fail(`request: unknown field "${key}" (known: ${SPEC_FIELDS.join(', ')})`);
    }
  }
  return {
    method: method(spec.method),
    url: url(spec.url),
    headers: headers(spec.headers),
    body: body(spec.body),
  };
}

/**
 * Sends `spec` (checked by {@link request}) through the host and waits.
 * Any status, 4xx and 5xx included, is a `response`; `error` is the WIT
 * `http-error` saying why none arrived: `{tag: 'timeout'}` or
 * `{tag: 'connect' | 'denied' | 'other', val: reason}`. Both carry the
 * `request` as sent. Anything else thrown (a bug, not the network) propagates.
 *
 * @param {RequestSpec} spec
 * @returns {Sent}
 */
export function send(spec) {
  const req = request(spec);
  try {
    return { request: req, response: hostSend(req) };
  } catch (err) {
    // componentize-js throws the `err` side of `result` as an Error whose
    // `payload` is the variant.
    const error = /** @type {any} */ (err)?.payload;
    if (!HTTP_ERRORS.includes(error?.tag)) throw err;
    return { request: req, error };
  }
}

/**
 * What a webhook's status means: `'delivered'` for 2xx; `'retry'` for 408
 * (timeout), 425 (too early), 429 (rate limited) and 5xx, which may heal;
 * `'reject'` for every other status (1xx, 3xx, the other 4xx), which will not.
 *
 * @param {number} status
 * @returns {'delivered' | 'retry' | 'reject'}
 */
export function classify(status) {
  if (!Number.isInteger(status)) {
    fail(`classify takes an HTTP status number, got ${describe(status)}`);
  }
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status < 600)) {
    return 'retry';
  }
  return 'reject';
}

/**
 * The delay the destination asked for with `Retry-After`, in milliseconds, as
 * the BigInt a `retry` outcome takes: delay-seconds (`120`) or an HTTP-date
 * (any of RFC 9110's three forms) measured against `nowMs`; a date in the past
 * is `0n`. `undefined` when the header is absent or unparseable.
 *
 * @param {Response} response
 * @param {number} [nowMs] the current time in ms since the Unix epoch (for tests)
 * @returns {bigint | undefined}
 */
export function retryAfterMs(response, nowMs = Date.now()) {
  const value = header(response.headers, 'retry-after')?.trim();
  if (value === undefined) return undefined;
  if (/^[0-9]+$/.test(value)) {
    // Saturate: a huge number means "a very long time", not garbage.
    const ms = BigInt(value) * 1000n;
    return ms > U64_MAX ? U64_MAX : ms;
  }
  const at = parseHttpDateMs(value);
  if (at === undefined) return undefined;
  return BigInt(Math.max(0, at - Math.floor(nowMs)));
}

/**
 * The outcome of `sent` (what {@link send} returned) for `msg`, by the policy
 * of {@link classify}: delivered; `retry` after {@link retryAfterMs}; `reject`
 * with `<host> answered HTTP 404: <start of the body>`. An `http-error`
 * `denied` (the host will never send it) rejects; `timeout`, `connect` and
 * `other` retry on the subscription's backoff. Anything but delivered is
 * logged as a warning naming the message id and the attempt, e.g.
 * `message nats-msg-7: HTTP 503: busy, attempt 2/4`.
 *
 * @param {Sent} sent
 * @param {Message} msg
 * @returns {Outcome}
 */
export function outcome(sent, msg) {
  const attempt = `attempt ${msg.attempt}/${msg.maxAttempts}`;
  if (sent?.error !== undefined) {
    const text = httpErrorText(sent.error);
    log('warn', `message ${msg.id}: ${text}, ${attempt}`);
    return sent.error.tag === 'denied' ? { tag: 'reject', val: text } : { tag: 'retry', val: undefined };
  }
  if (sent?.response === undefined) {
    fail(`outcome takes what send() returned, got ${describe(sent)}`);
  }
  const response = sent.response;
  const decision = classify(response.status);
  if (decision === 'delivered') return { tag: 'delivered' };
  const said = summary(response);
  log('warn', `message ${msg.id}: ${said}, ${attempt}`);
  if (decision === 'retry') return { tag: 'retry', val: retryAfterMs(response) };
  return { tag: 'reject', val: `${destination(sent.request.url)} answered ${said}` };
}

/**
 * A one-line description of `response` for logs and reject reasons: the status
 * and the start of the body (at most `maxChars` characters, line breaks as
 * spaces, `…` when cut), e.g. `HTTP 422: no such contact`.
 *
 * @param {Response} response
 * @param {number} [maxChars]
 * @returns {string}
 */
export function summary(response, maxChars = SUMMARY_CHARS) {
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(response.body).trim();
  let out = `HTTP ${response.status}`;
  if (text !== '' && maxChars > 0) {
    const chars = Array.from(text);
    out += `: ${chars.slice(0, maxChars).join('').replace(/[\r\n\t]/g, ' ')}`;
    if (chars.length > maxChars) out += '…';
  }
  return out;
}

/**
 * The W3C trace context of `msg` as header pairs to add to a request, so the
 * destination's spans join the producer's trace: `[['traceparent', ...],
 * ['tracestate', ...]]`, the latter only when the message has a sendable one
 * (several are joined with `,`). Empty when the message has no `traceparent`,
 * several, or one the spec forbids forwarding (the host's own rule: version
 * `00` exactly `00-<32 hex>-<16 hex>-<2 hex>`, lower case, ids not all zero;
 * a later version whose first 55 characters read so; never `ff`).
 *
 * @param {Message} msg
 * @returns {Array<[string, string]>}
 */
export function traceContext(msg) {
  const named = (/** @type {string} */ name) =>
    msg.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v.replace(/^[ \t]+|[ \t]+$/g, ''));
  const parents = named('traceparent');
  if (parents.length !== 1 || !isValidTraceparent(parents[0])) return [];
  /** @type {Array<[string, string]>} */
  const out = [['traceparent', parents[0]]];
  const states = named('tracestate').filter((v) => v !== '');
  if (states.length > 0 && states.every((v) => /^[\t\x20-\x7e]*$/.test(v))) {
    out.push(['tracestate', states.join(',')]);
  }
  return out;
}

/**
 * The standard JSON envelope of `msg` (what the built-in `http-webhook` plugin
 * POSTs), as JSON text:
 * `{"subject":"order.completed","data":{"id":42},"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-7"}`.
 * `data` is the payload itself when it is valid JSON, embedded as the producer
 * wrote it (surrounding whitespace trimmed; never re-serialised, so big
 * integers, number spellings and key order survive); else, when it is UTF-8,
 * the payload as a JSON string; else `data` is left out and `data_base64`
 * (standard alphabet, padded) holds the bytes. `timestamp` is the JetStream
 * store time, RFC 3339 UTC to the second.
 *
 * @param {Message} msg
 * @returns {string}
 */
export function envelope(msg) {
  if (!isBytes(msg.payload)) {
    fail(`envelope takes a message whose payload is a Uint8Array, got ${describe(msg.payload)}`);
  }
  const text = utf8(msg.payload);
  let data;
  if (text === undefined) data = `"data_base64":${JSON.stringify(base64(msg.payload))}`;
  else if (isJson(text)) data = `"data":${text.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, '')}`;
  else data = `"data":${JSON.stringify(text)}`;
  const published = new Date(Number(msg.publishedMs)).toISOString().slice(0, 19);
  return `{"subject":${JSON.stringify(msg.subject)},${data},"timestamp":"${published}Z","message_id":${JSON.stringify(msg.id)}}`;
}

// ---- request checks --------------------------------------------------------

/** @returns {never} */
function fail(/** @type {string} */ message) {
  throw new TypeError(message);
}

/** @param {unknown} value @returns {Method} */
function method(value) {
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (METHODS.includes(lower)) return /** @type {Method} */ ({ tag: lower });
    if (!TOKEN.test(value)) fail(`request: method ${JSON.stringify(value)} is not an HTTP method name`);
    return { tag: 'other', val: value };
  }
  if (isPlainObject(value)) {
    const v = /** @type {any} */ (value);
    if (METHODS.includes(v.tag)) return { tag: v.tag };
    if (v.tag === 'other' && typeof v.val === 'string' && TOKEN.test(v.val)) return { tag: 'other', val: v.val };
  }
  fail(`request: method must be a string like 'POST' or a variant like {tag: 'post'}, got ${describe(value)}`);
}

/** @param {unknown} value @returns {string} */
function url(value) {
  if (typeof value !== 'string') fail(`request: url must be a string, got ${describe(value)}`);
  // The URL itself may hold a secret (a token in its path or query): not quoted.
  if (!/^https?:\/\/[^/?#]/i.test(value)) fail('request: url must be an absolute http:// or https:// URL');
  return value;
}

/** @param {unknown} value @returns {Array<[string, string]>} */
function headers(value) {
  if (value === undefined || value === null) return [];
  /** @type {Array<[string, string]>} */
  const out = [];
  if (Array.isArray(value)) {
    value.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string') {
        fail(`request: headers[${i}] must be a [name, value] pair of strings, got ${describe(pair)}`);
      }
      out.push([headerName(pair[0]), headerValue(pair[0], pair[1])]);
    });
    return out;
  }
  if (isPlainObject(value)) {
    for (const [name, v] of Object.entries(/** @type {object} */ (value))) {
      out.push([headerName(name), headerValue(name, v)]);
    }
    return out;
  }
  fail(`request: headers must be an array of [name, value] pairs or an object of string values, got ${describe(value)}`);
}

/** @param {string} name */
function headerName(name) {
  if (!TOKEN.test(name)) fail(`request: header name ${JSON.stringify(name)} is not an HTTP token`);
  return name;
}

/** @param {string} name @param {unknown} value */
function headerValue(name, value) {
  if (typeof value !== 'string') {
    fail(`request: header "${name}" must be a string, got ${describe(value)}; String(...) it first`);
  }
  if (UNSENDABLE.test(value)) fail(`request: header "${name}" has a line break or control character in its value`);
  return value;
}

/** @param {unknown} value @returns {Uint8Array} */
function body(value) {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === 'string') return new TextEncoder().encode(value);
  if (isBytes(value)) return /** @type {Uint8Array} */ (value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (tagOf(value) === 'ArrayBuffer') return new Uint8Array(/** @type {ArrayBuffer} */ (value));
  fail(`request: body must be a Uint8Array or a string, got ${describe(value)}; JSON.stringify(...) an object first`);
}

// What the host hands over (the message, a response, their arrays and bytes)
// comes from the bindings' own realm, so `instanceof Uint8Array` and
// `Object.prototype` comparisons are false for it: these checks work across realms.

/** @param {unknown} value */
function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** @param {unknown} value */
function isBytes(value) {
  return ArrayBuffer.isView(value) && tagOf(value) === 'Uint8Array';
}

/** @param {unknown} value */
function tagOf(value) {
  return Object.prototype.toString.call(value).slice(8, -1);
}

/** A value's kind for an error message, never its contents. @param {unknown} value */
function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    const name = Object.getPrototypeOf(value)?.constructor?.name;
    return name && name !== 'Object' ? article(name) : 'an object';
  }
  return typeof value === 'undefined' ? 'undefined' : article(typeof value);
}

/** @param {string} noun */
function article(noun) {
  return /^[aeioAEIO]/.test(noun) ? `an ${noun}` : `a ${noun}`;
}

// ---- outcome ---------------------------------------------------------------

/** @param {HttpError} error */
function httpErrorText(error) {
  switch (error.tag) {
    case 'timeout':
      return "no response within the subscription's timeout";
    case 'connect':
      return `connection failed: ${error.val}`;
    case 'denied':
      return `request denied by the host: ${error.val}`;
    default:
      return `request failed: ${error.val}`;
  }
}

/** The URL's host, for a reason; its userinfo, path and query may be secret. @param {string} to */
function destination(to) {
  return /^https?:\/\/(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]+)/i.exec(to)?.[1] ?? 'destination';
}

/** The first value of header `name` (case-insensitive). @param {Array<[string, string]>} list @param {string} name */
function header(list, name) {
  return list.find(([n]) => n.toLowerCase() === name)?.[1];
}

// ---- dates (sdk/src/time.rs) -----------------------------------------------

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/**
 * An HTTP-date (RFC 9110 section 5.6.7) in ms since the Unix epoch, or
 * undefined. Reads the three forms recipients must accept
 * (`Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`,
 * `Sun Nov  6 08:49:37 1994`): in each the first number is the day and the
 * second the year. Not `Date.parse`, whose leniency differs between engines.
 *
 * @param {string} value
 */
function parseHttpDateMs(value) {
  let month;
  let time;
  const numbers = [];
  for (const token of value.split(/[ ,-]/).filter((t) => t !== '')) {
    const m = MONTHS.indexOf(token.toLowerCase());
    if (token.includes(':')) time = token;
    else if (/^[0-9]+$/.test(token)) numbers.push(token);
    else if (m >= 0) month = m;
    // Anything else is the weekday or the zone ("GMT"), which carry nothing.
  }
  if (numbers.length !== 2 || month === undefined || time === undefined) return undefined;
  const day = Number(numbers[0]);
  let year = Number(numbers[1]);
  if (day < 1 || day > 31) return undefined;
  if (numbers[1].length === 2) year += year < 70 ? 2000 : 1900;
  else if (numbers[1].length !== 4 || year < 1970) return undefined;
  const hms = time.split(':');
  if (hms.length !== 3 || !hms.every((p) => /^[0-9]+$/.test(p))) return undefined;
  const [h, min, s] = hms.map(Number);
  if (h > 23 || min > 59 || s > 60) return undefined;
  return Date.UTC(year, month, day) + (h * 3600 + min * 60 + s) * 1000;
}

// ---- envelope and trace context --------------------------------------------

/** The bytes as text, or undefined when they are not UTF-8. @param {Uint8Array} bytes */
function utf8(bytes) {
  try {
    // ignoreBOM keeps a byte order mark, which makes the payload not JSON, as in Rust.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** @param {string} text */
function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** @param {Uint8Array} bytes */
function base64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** sdk/trace-context/src/lib.rs `is_valid_traceparent`. @param {string} value */
function isValidTraceparent(value) {
  if (value.length < 55 || !/^[\x21-\x7e]+$/.test(value)) return false;
  const version = value.slice(0, 2);
  const restOk = version === '00' ? value.length === 55 : value.length === 55 || value[55] === '-';
  return (
    restOk &&
    version !== 'ff' &&
    /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}/.test(value)
  );
}
