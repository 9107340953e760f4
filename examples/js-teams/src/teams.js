// A sinkhost sink plugin in JavaScript: `order.*` events become a Microsoft Teams
// message carrying an Adaptive Card, POSTed to a Teams incoming webhook
// (Workflows "post to a channel when a webhook request is received", or any
// endpoint that takes the same `{"type":"message","attachments":[...]}` body).
//
// Built with componentize-js (see ../README.md); the host provides `http.send`
// and `log.log`, everything else is plain JavaScript.

import { send } from 'sinkhost:plugin/http@0.1.0';
import { log } from 'sinkhost:plugin/log@0.1.0';

const SETTINGS = new Set(['facts']);
const OWN_HEADERS = new Set(['content-type', 'idempotency-key']);

/** Set by `init`: where to POST and what to send along. */
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

/** `Retry-After` (delta-seconds or an HTTP date) in milliseconds, if present. */
function retryAfterMs(headers) {
  const found = headers.find(([name]) => name === 'retry-after');
  if (!found) return undefined;
  const value = found[1].trim();
  if (/^\d+$/.test(value)) return BigInt(value) * 1000n;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return BigInt(Math.max(0, at - Date.now()));
}

/** A W3C `traceparent` (version 00); an invalid one must not be forwarded. */
const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The message's `traceparent`/`tracestate` headers, when its traceparent is valid. */
function traceContext(headers) {
  const parent = headers.find(([name]) => name.toLowerCase() === 'traceparent')?.[1] ?? '';
  return TRACEPARENT.test(parent) ? headers.filter(([name]) => /^trace(parent|state)$/i.test(name)) : [];
}

/** What a destination's status means for the message. */
function classify(response, msg) {
  const status = response.status;
  if (status >= 200 && status < 300) return { tag: 'delivered' };
  log('warn', `Teams webhook answered HTTP ${status} (attempt ${msg.attempt}/${msg.maxAttempts})`);
  if (status === 429 || status >= 500) {
    return { tag: 'retry', val: retryAfterMs(response.headers) };
  }
  return { tag: 'reject', val: `Teams webhook answered HTTP ${status}` };
}

/** A failed `http.send`: the host refused (denied) never heals, the rest may. */
function classifyError(err) {
  const error = err?.payload ?? err;
  const detail = error?.val === undefined ? '' : `: ${error.val}`;
  log('warn', `Teams webhook not reached: ${error?.tag ?? error}${detail}`);
  if (error?.tag === 'denied') {
    return { tag: 'reject', val: `the host denied the request${detail}` };
  }
  return { tag: 'retry', val: undefined };
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

    const body = JSON.stringify(card(msg.subject, order, msg.id, config.facts));
    const request = {
      method: { tag: 'post' },
      url: config.url,
      headers: [
        ...config.headers,
        ['Content-Type', 'application/json'],
        ['Idempotency-Key', msg.id],
        ...traceContext(msg.headers),
      ],
      body: new TextEncoder().encode(body),
    };
    let response;
    try {
      response = send(request);
    } catch (err) {
      return classifyError(err);
    }
    return classify(response, msg);
  },
};
