// A sinkhost sink plugin in JavaScript: POSTs each message as JSON to
// `webhook.url` with the configured headers.
//
// Build: npm install && npm run build   (writes the component next to package.json)
// Try:   sinkhost plugin test ./<name>.wasm --subject order.completed --payload order.json --dry-run

import { send } from 'sinkhost:plugin/http@0.1.0';
import { log } from 'sinkhost:plugin/log@0.1.0';

let config = null;

export const sink = {
  // An error is thrown as a string: `init` returns result<_, string>.
  init(text) {
    const raw = JSON.parse(text);
    const url = raw.webhook?.url;
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) {
      throw 'webhook.url must be an http(s) URL';
    }
    const settings = raw.settings ?? {};
    for (const key of Object.keys(settings)) throw `unknown setting ${key}`;
    config = { url, headers: Object.entries(raw.webhook.headers ?? {}) };
  },

  deliver(msg) {
    let data;
    try {
      data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.payload));
    } catch {
      return { tag: 'reject', val: 'payload is not JSON' };
    }
    const body = JSON.stringify({ subject: msg.subject, data, message_id: msg.id });
    let response;
    try {
      response = send({
        method: { tag: 'post' },
        url: config.url,
        headers: [...config.headers, ['Content-Type', 'application/json'], ['Idempotency-Key', msg.id]],
        body: new TextEncoder().encode(body),
      });
    } catch (err) {
      // err.payload is the typed http-error: denied never heals, the rest may.
      const error = err?.payload ?? err;
      log('warn', `not sent: ${error?.tag}`);
      return error?.tag === 'denied' ? { tag: 'reject', val: 'denied by the host' } : { tag: 'retry', val: undefined };
    }
    if (response.status >= 200 && response.status < 300) return { tag: 'delivered' };
    return { tag: 'retry', val: undefined };
  },
};
