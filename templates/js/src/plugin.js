// A sinkhost sink plugin in JavaScript: POSTs each message as the standard JSON
// envelope to `webhook.url`, with the configured headers, the message id as
// `Idempotency-Key` and the producer's trace context.
//
// Build: npm install && npm run build   (writes the component next to package.json)
// Try:   sinkhost plugin test ./<name>.wasm --subject order.completed --payload order.json --dry-run
//
// src/sinkhost.js is the helper (its types: src/sinkhost.d.ts, the WIT's:
// src/types/). It checks every request loudly and decides outcomes: 2xx
// delivered; 408, 425, 429 and 5xx retried after Retry-After; any other status
// rejected; of the errors that leave no response, `denied` rejected and the
// rest retried.

import { envelope, outcome, send, traceContext } from './sinkhost.js';

/** @type {string[]} The settings this plugin takes: none yet. Add yours, and read them in parseConfig. */
const SETTINGS = [];

/** Set by `init`: where to POST and what to send along. */
let config = { url: '', headers: /** @type {Array<[string, string]>} */ ([]) };

/**
 * The webhook to POST to, from `init`'s config. Throws a string for what the
 * operator must fix: `init` passes it on as its error.
 * @param {string} text
 */
function parseConfig(text) {
  const raw = JSON.parse(text);
  const url = raw.webhook?.url;
  if (typeof url !== 'string' || !/^https?:\/\/[^/?#]/i.test(url)) {
    throw '`webhook.url` must be an http:// or https:// URL';
  }
  const headers = raw.webhook.headers ?? {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string') throw `\`webhook.headers.${name}\` must be a string`;
  }
  for (const key of Object.keys(raw.settings ?? {})) {
    if (!SETTINGS.includes(key)) throw `unknown setting \`${key}\` (known: ${SETTINGS.join(', ') || 'none'})`;
  }
  return { url, headers: Object.entries(headers) };
}

/** @type {typeof import('sinkhost:plugin/sink@0.1.0')} */
export const sink = {
  // `init` reports an error by throwing a string (result::err). An Error thrown
  // out of it would trap, and componentize-js would log "expected a string,
  // received [object]" instead of its message: so it becomes the error too.
  init(text) {
    try {
      config = parseConfig(text);
    } catch (err) {
      if (typeof err === 'string') throw err;
      throw `${err}${err instanceof Error ? ` at ${err.stack?.split('\n')[0]}` : ''}`;
    }
  },

  deliver(msg) {
    const sent = send({
      method: 'POST',
      url: config.url,
      headers: [
        ...config.headers,
        ['Content-Type', 'application/json'],
        ['Idempotency-Key', msg.id],
        ...traceContext(msg),
      ],
      body: envelope(msg),
    });
    return outcome(sent, msg);
  },
};
