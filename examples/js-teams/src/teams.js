// A sinkhost sink plugin in JavaScript: `order.*` events become a Microsoft Teams
// message carrying an Adaptive Card, POSTed to a Teams incoming webhook
// (Workflows "post to a channel when a webhook request is received", or any
// endpoint that takes the same `{"type":"message","attachments":[...]}` body).
//
// Built with componentize-js (see ../README.md). sdk/js/sinkhost.js, the helper
// `sinkhost plugin new --lang js` copies into a project, checks the request,
// forwards the trace context and decides the outcome: 2xx delivered; 408, 425,
// 429 and 5xx retried after Retry-After; any other status rejected (`... answered
// HTTP 400: ...`); `denied` rejected, the other http errors retried. The build
// runs from the repository root so that componentize-js can read the helper.

import { outcome, send, traceContext } from '../../../sdk/js/sinkhost.js';

const SETTINGS = new Set(['facts']);
const OWN_HEADERS = new Set(['content-type', 'idempotency-key']);

/**
 * Set by `init`: where to POST and what to send along.
 * @type {{url: string, headers: Array<[string, string]>, facts: string[] | null} | null}
 */
let config = null;

/** `init` failures are `result::err(string)`: throw the string, never an Error. */
function invalid(message) {
  throw `js-teams: ${message}`;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    invalid(`config is not JSON: ${err.message}`);
  }
  if (!isObject(raw)) invalid('config is not a JSON object');
  const webhook = raw.webhook;
  if (!isObject(webhook)) invalid('`webhook` is missing');
  const url = webhook.url;
  if (typeof url !== 'string' || !/^https?:\/\/[^/]+/.test(url)) {
    invalid('`webhook.url` must be an http:// or https:// URL');
  }
  const headers = [];
  const configured = webhook.headers ?? {};
  if (!isObject(configured)) invalid('`webhook.headers` must be a map of strings');
  for (const [name, value] of Object.entries(configured)) {
    if (typeof value !== 'string') invalid(`\`webhook.headers.${name}\` must be a string`);
    if (!OWN_HEADERS.has(name.toLowerCase())) headers.push([name, value]);
  }
  const settings = raw.settings ?? {};
  if (!isObject(settings)) invalid('`settings` must be a map');
  for (const key of Object.keys(settings)) {
    if (!SETTINGS.has(key)) {
      invalid(`unknown setting \`${key}\` (known: ${[...SETTINGS].join(', ')})`);
    }
  }
  /** @type {string[] | null} */
  let facts = null;
  if (settings.facts !== undefined) {
    const ok =
      Array.isArray(settings.facts) && settings.facts.every((f) => typeof f === 'string');
    if (!ok) invalid('`settings.facts` must be a list of payload field names');
    facts = settings.facts;
  }
  return { url, headers, facts };
}

/** A fact's value as Teams shows it: strings as they are, the rest as JSON. */
function display(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The Teams message for one order event (an Adaptive Card 1.2 in a message). */
function card(subject, order, id, facts) {
  const event = subject.slice('order.'.length);
  const title =
    order.order_id === undefined ? `Order ${event}` : `Order ${display(order.order_id)} ${event}`;
  const fields = facts ?? Object.keys(order).filter((key) => key !== 'order_id');
  const rows = fields
    .filter((key) => order[key] !== undefined)
    .map((key) => ({ title: key, value: display(order[key]) }));
  rows.push({ title: 'message id', value: id });
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.2',
          body: [
            { type: 'TextBlock', size: 'Medium', weight: 'Bolder', text: title, wrap: true },
            { type: 'FactSet', facts: rows },
          ],
        },
      },
    ],
  };
}

export const sink = {
  init(text) {
    config = parseConfig(text);
  },

  deliver(msg) {
    if (config === null) return { tag: 'retry', val: undefined };
    if (!msg.subject.startsWith('order.')) {
      return { tag: 'reject', val: `js-teams formats order.* events, not ${msg.subject}` };
    }
    let order;
    try {
      order = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.payload));
    } catch (err) {
      return { tag: 'reject', val: `payload is not JSON: ${err.message}` };
    }
    if (!isObject(order)) return { tag: 'reject', val: 'payload is not a JSON object' };

    const sent = send({
      method: 'POST',
      url: config.url,
      headers: [
        ...config.headers,
        ['Content-Type', 'application/json'],
        ['Idempotency-Key', msg.id],
        ...traceContext(msg),
      ],
      body: JSON.stringify(card(msg.subject, order, msg.id, config.facts)),
    });
    return outcome(sent, msg);
  },
};
