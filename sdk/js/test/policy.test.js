// classify, retryAfterMs, summary and outcome: the delivery policy, and the
// warning outcome() logs for anything not delivered.
import test from 'node:test';
import assert from 'node:assert/strict';
import '../testing/register.js';

const { classify, retryAfterMs, summary, outcome, send } = await import('../sinkhost.js');
const host = await import('../testing/host.js');

const URL = 'https://hooks.example.com/in/s3cret';
const MSG = host.message('{}', { id: 'nats-msg-7', attempt: 2, maxAttempts: 4 });
/** 2026-04-21T08:09:50Z, the instant of `Tue, 21 Apr 2026 08:09:50 GMT`. */
const AT = 1_776_758_990_000;
const after = (value) => host.response(503, [['retry-after', value]]);

test('classify: 2xx delivered; 408, 425, 429, 5xx retry; every other status rejects', () => {
  const expected = {
    100: 'reject', 199: 'reject',
    200: 'delivered', 204: 'delivered', 299: 'delivered',
    300: 'reject', 301: 'reject', 304: 'reject',
    400: 'reject', 401: 'reject', 404: 'reject', 407: 'reject', 409: 'reject', 422: 'reject', 426: 'reject', 499: 'reject',
    408: 'retry', 425: 'retry', 429: 'retry',
    500: 'retry', 503: 'retry', 599: 'retry',
    600: 'reject',
  };
  for (const [status, decision] of Object.entries(expected)) {
    assert.equal(classify(Number(status)), decision, `HTTP ${status}`);
  }
  assert.throws(() => classify('200'), { name: 'TypeError', message: 'classify takes an HTTP status number, got a string' });
  assert.throws(() => classify(host.response(200)), { name: 'TypeError', message: 'classify takes an HTTP status number, got an object' });
});

test('retryAfterMs: delay-seconds', () => {
  assert.equal(retryAfterMs(after('120')), 120_000n);
  assert.equal(retryAfterMs(after(' 3 ')), 3_000n);
  assert.equal(retryAfterMs(after('0')), 0n);
  assert.equal(retryAfterMs(after('99999999999999999999999')), 18_446_744_073_709_551_615n);
});

test('retryAfterMs: an HTTP-date in any of the three forms, relative to now', () => {
  for (const date of ['Tue, 21 Apr 2026 08:09:50 GMT', 'Tuesday, 21-Apr-26 08:09:50 GMT', 'Tue Apr 21 08:09:50 2026']) {
    assert.equal(retryAfterMs(after(date), AT - 30_000), 30_000n, date);
  }
  assert.equal(retryAfterMs(after('Sun, 06 Nov 1994 08:49:37 GMT'), 784_111_777_000 - 1_500), 1_500n);
  // Against the real clock, a date an hour ahead is about an hour.
  const ahead = new Date(Date.now() + 3_600_000).toUTCString();
  const ms = retryAfterMs(after(ahead));
  assert.ok(ms > 3_590_000n && ms <= 3_600_000n, `${ms}`);
});

test('retryAfterMs: a date in the past is 0', () => {
  assert.equal(retryAfterMs(after('Tue, 21 Apr 2026 08:09:50 GMT'), AT + 5_000), 0n);
  assert.equal(retryAfterMs(after('Sun, 06 Nov 1994 08:49:37 GMT')), 0n);
});

test('retryAfterMs: garbage or no header is undefined', () => {
  for (const bad of ['', '-5', '1.5', 'soon', '120s', '0x10', 'Sun, 06 Foo 1994 08:49:37 GMT', 'Sun, 32 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 25:49:37 GMT', 'Sun, 06 Nov 1994 08:49 GMT', 'Sun, 06 Nov 1969 08:49:37 GMT', 'Sun, 06 Nov 08:49:37 GMT']) {
    assert.equal(retryAfterMs(after(bad), AT), undefined, JSON.stringify(bad));
  }
  assert.equal(retryAfterMs(host.response(503, [['x-retry', '5']])), undefined);
});

test('retryAfterMs: the first Retry-After counts, whatever its case', () => {
  assert.equal(retryAfterMs(host.response(429, [['Retry-After', '7'], ['retry-after', '9']])), 7_000n);
});

test('summary: the status and the start of the body, on one line', () => {
  assert.equal(summary(host.response(422, [], '  bad\nthing\thappened  ')), 'HTTP 422: bad thing happened');
  assert.equal(summary(host.response(422, [], 'bad thing'), 3), 'HTTP 422: bad…');
  assert.equal(summary(host.response(500)), 'HTTP 500');
  assert.equal(summary(host.response(400, [], 'x'.repeat(201))), `HTTP 400: ${'x'.repeat(200)}…`);
});

/** What outcome() makes of the host answering `answer` to a POST to `url`, and what it logged. */
function decide(answer, url = URL) {
  host.reset();
  host.answerWith(answer);
  const result = outcome(send({ method: 'POST', url, body: '{}' }), MSG);
  return { result, logged: [...host.calls.logged] };
}

test('outcome: 2xx is delivered and logs nothing', () => {
  assert.deepEqual(decide(() => host.response(204)), { result: { tag: 'delivered' }, logged: [] });
});

test('outcome: other 4xx and 3xx reject with the host and the body, and warn', () => {
  assert.deepEqual(decide(() => host.response(404, [], 'no such hook\n')), {
    result: { tag: 'reject', val: 'hooks.example.com answered HTTP 404: no such hook' },
    logged: [['warn', 'message nats-msg-7: HTTP 404: no such hook, attempt 2/4']],
  });
  assert.deepEqual(decide(() => host.response(301)).result, { tag: 'reject', val: 'hooks.example.com answered HTTP 301' });
  // Never the URL's userinfo, port, path or query.
  const reason = (url) => decide(() => host.response(400), url).result.val;
  assert.equal(reason('https://user:pw@hooks.example.com:8443/x?token=1'), 'hooks.example.com answered HTTP 400');
  assert.equal(reason('http://[::1]:8099/hook'), '[::1] answered HTTP 400');
});

test('outcome: 408, 425, 429 and 5xx retry after Retry-After, and warn', () => {
  assert.deepEqual(decide(() => host.response(503, [], 'busy')), {
    result: { tag: 'retry', val: undefined },
    logged: [['warn', 'message nats-msg-7: HTTP 503: busy, attempt 2/4']],
  });
  assert.deepEqual(decide(() => host.response(429, [['retry-after', '3']])).result, { tag: 'retry', val: 3_000n });
  assert.deepEqual(decide(() => host.response(408)).result, { tag: 'retry', val: undefined });
  assert.deepEqual(decide(() => host.response(425, [['retry-after', '1']])).result, { tag: 'retry', val: 1_000n });
});

test('outcome: denied rejects; timeout, connect and other retry on the backoff; each warns', () => {
  const fails = (variant) => decide(() => {
    throw host.httpError(variant);
  });
  assert.deepEqual(fails({ tag: 'denied', val: 'host evil.example is not allowed' }), {
    result: { tag: 'reject', val: 'request denied by the host: host evil.example is not allowed' },
    logged: [['warn', 'message nats-msg-7: request denied by the host: host evil.example is not allowed, attempt 2/4']],
  });
  assert.deepEqual(fails({ tag: 'timeout' }), {
    result: { tag: 'retry', val: undefined },
    logged: [['warn', "message nats-msg-7: no response within the subscription's timeout, attempt 2/4"]],
  });
  assert.deepEqual(fails({ tag: 'connect', val: 'connection refused' }), {
    result: { tag: 'retry', val: undefined },
    logged: [['warn', 'message nats-msg-7: connection failed: connection refused, attempt 2/4']],
  });
  assert.deepEqual(fails({ tag: 'other', val: 'invalid header' }), {
    result: { tag: 'retry', val: undefined },
    logged: [['warn', 'message nats-msg-7: request failed: invalid header, attempt 2/4']],
  });
});

test('outcome takes what send() returned, not a bare response', () => {
  assert.throws(() => outcome(host.response(200), MSG), {
    name: 'TypeError',
    message: 'outcome takes what send() returned, got an object',
  });
  assert.throws(() => outcome(undefined, MSG), { name: 'TypeError', message: 'outcome takes what send() returned, got undefined' });
});
