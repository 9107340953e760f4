// request() and send(): every wrong type is a TypeError naming the field, before
// anything reaches the host.
import test from 'node:test';
import assert from 'node:assert/strict';
import '../testing/register.js';

const { request, send } = await import('../sinkhost.js');
const host = await import('../testing/host.js');

const URL = 'https://hooks.example.com/in/s3cret';
const bytes = (/** @type {string} */ text) => new TextEncoder().encode(text);

/** Asserts `spec` throws exactly `message` as a TypeError. */
function rejects(spec, message) {
  assert.throws(() => request(spec), { name: 'TypeError', message });
}

test('a spec becomes the WIT record', () => {
  const req = request({
    method: 'POST',
    url: URL,
    headers: { 'Content-Type': 'application/json', 'X-A': '1' },
    body: '{"a":"é"}',
  });
  assert.deepEqual(req, {
    method: { tag: 'post' },
    url: URL,
    headers: [
      ['Content-Type', 'application/json'],
      ['X-A', '1'],
    ],
    body: new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0xa9, 0x22, 0x7d]),
  });
});

test('methods: the seven WIT methods in any case, other tokens, variants', () => {
  const tag = (method) => request({ method, url: URL }).method;
  assert.deepEqual(tag('GET'), { tag: 'get' });
  assert.deepEqual(tag('delete'), { tag: 'delete' });
  assert.deepEqual(tag('Options'), { tag: 'options' });
  assert.deepEqual(tag('PROPFIND'), { tag: 'other', val: 'PROPFIND' });
  assert.deepEqual(tag({ tag: 'put' }), { tag: 'put' });
  assert.deepEqual(tag({ tag: 'other', val: 'PURGE' }), { tag: 'other', val: 'PURGE' });
});

test('bodies: bytes as they are, strings as UTF-8, nothing as empty', () => {
  const body = (value) => request({ method: 'PUT', url: URL, body: value }).body;
  const raw = new Uint8Array([0, 1, 0xff]);
  assert.equal(body(raw), raw);
  assert.deepEqual(body(raw.buffer), raw);
  assert.deepEqual(body(new DataView(raw.buffer, 1, 2)), new Uint8Array([1, 0xff]));
  assert.deepEqual(body(new Uint16Array([0x0201])), new Uint8Array([1, 2]));
  assert.deepEqual(body('€'), new Uint8Array([0xe2, 0x82, 0xac]));
  assert.deepEqual(body(undefined), new Uint8Array(0));
  assert.deepEqual(body(null), new Uint8Array(0));
  assert.deepEqual(request({ method: 'GET', url: URL }).headers, []);
});

test("what the host handed over (another realm's arrays and bytes) is accepted as it is", () => {
  const msg = host.message('{"a":1}', { headers: [['traceparent', 'x']] });
  const req = request({ method: 'POST', url: URL, headers: msg.headers, body: msg.payload });
  assert.equal(req.body, msg.payload);
  assert.deepEqual(Array.from(req.headers, (pair) => [...pair]), [['traceparent', 'x']]);
  assert.deepEqual(request({ method: 'POST', url: URL, body: host.foreign('new Uint8Array([7, 8]).buffer') }).body, new Uint8Array([7, 8]));
  assert.deepEqual(request({ method: 'POST', url: URL, headers: host.foreign('({ "X-A": "1" })') }).headers, [['X-A', '1']]);
  assert.throws(() => request({ method: 'POST', url: URL, body: host.foreign('({ a: 1 })') }), {
    name: 'TypeError',
    message: 'request: body must be a Uint8Array or a string, got an object; JSON.stringify(...) an object first',
  });
});

test('header pairs keep their order and repeats', () => {
  const headers = [
    ['X-A', '1'],
    ['x-a', '2'],
    ['Authorization', 'Bearer t'],
  ];
  assert.deepEqual(request({ method: 'POST', url: URL, headers }).headers, headers);
});

test('a body that is not bytes or a string is a TypeError', () => {
  const hint = '; JSON.stringify(...) an object first';
  const spec = (body) => ({ method: 'POST', url: URL, body });
  rejects(spec({ order_id: 42 }), `request: body must be a Uint8Array or a string, got an object${hint}`);
  rejects(spec(42), `request: body must be a Uint8Array or a string, got a number${hint}`);
  rejects(spec([123, 125]), `request: body must be a Uint8Array or a string, got an array${hint}`);
  rejects(spec(new Map()), `request: body must be a Uint8Array or a string, got a Map${hint}`);
});

test('headers that are not pairs or an object of strings are a TypeError naming the header', () => {
  const spec = (headers) => ({ method: 'POST', url: URL, headers });
  const shape = 'request: headers must be an array of [name, value] pairs or an object of string values';
  rejects(spec(new Map([['X-A', '1']])), `${shape}, got a Map`);
  rejects(spec('X-A: 1'), `${shape}, got a string`);
  rejects(spec({ 'X-Count': 3 }), 'request: header "X-Count" must be a string, got a number; String(...) it first');
  rejects(spec({ 'X-Flag': true }), 'request: header "X-Flag" must be a string, got a boolean; String(...) it first');
  rejects(spec({ 'X-None': undefined }), 'request: header "X-None" must be a string, got undefined; String(...) it first');
  rejects(spec([['X-A', 5]]), 'request: header "X-A" must be a string, got a number; String(...) it first');
  rejects(spec([['X-A']]), 'request: headers[0] must be a [name, value] pair of strings, got an array');
  rejects(spec([['X-A', '1'], 'X-B: 2']), 'request: headers[1] must be a [name, value] pair of strings, got a string');
  rejects(spec({ 'Bad Name': 'x' }), 'request: header name "Bad Name" is not an HTTP token');
  rejects(spec([['', 'x']]), 'request: header name "" is not an HTTP token');
});

test('a header value that cannot be sent is a TypeError that does not quote the value', () => {
  const spec = { method: 'POST', url: URL, headers: { Authorization: 'Bearer s3cret\r\nX-Evil: 1' } };
  assert.throws(() => request(spec), (err) => {
    assert.equal(err.name, 'TypeError');
    assert.equal(err.message, 'request: header "Authorization" has a line break or control character in its value');
    return true;
  });
  // A tab is fine.
  assert.deepEqual(request({ method: 'GET', url: URL, headers: { 'X-A': 'a\tb' } }).headers, [['X-A', 'a\tb']]);
});

test('a url that is not absolute http(s) is a TypeError that does not quote the url', () => {
  const spec = (url) => ({ method: 'GET', url });
  rejects(spec(42), 'request: url must be a string, got a number');
  rejects(spec(undefined), 'request: url must be a string, got undefined');
  for (const bad of ['ftp://hooks.example.com/s3cret', '/hook', 'hooks.example.com/hook', 'https://', 'https:///x']) {
    rejects(spec(bad), 'request: url must be an absolute http:// or https:// URL');
  }
  assert.equal(request(spec('HTTP://127.0.0.1:8099/hook')).url, 'HTTP://127.0.0.1:8099/hook');
});

test('a method that is missing or not a method is a TypeError', () => {
  const shape = "request: method must be a string like 'POST' or a variant like {tag: 'post'}";
  rejects({ url: URL }, `${shape}, got undefined`);
  rejects({ method: { tag: 'posts' }, url: URL }, `${shape}, got an object`);
  rejects({ method: { tag: 'other' }, url: URL }, `${shape}, got an object`);
  rejects({ method: 2, url: URL }, `${shape}, got a number`);
  rejects({ method: 'PO ST', url: URL }, 'request: method "PO ST" is not an HTTP method name');
});

test('a misspelt field or a spec that is not an object is a TypeError', () => {
  rejects({ method: 'POST', url: URL, data: '{}' }, 'request: unknown field "data" (known: method, url, headers, body)');
  rejects({ method: 'POST', url: URL, header: {} }, 'request: unknown field "header" (known: method, url, headers, body)');
  rejects(URL, 'request takes {method, url, headers, body}, got a string');
  rejects(null, 'request takes {method, url, headers, body}, got null');
});

test('send checks before the host sees anything, and passes the record on', () => {
  host.reset();
  assert.throws(() => send({ method: 'POST', url: URL, body: { a: 1 } }), TypeError);
  assert.equal(host.calls.sent.length, 0);

  const sent = send({ method: 'POST', url: URL, headers: { 'X-A': '1' }, body: 'hi' });
  assert.deepEqual(host.calls.sent, [{ method: { tag: 'post' }, url: URL, headers: [['X-A', '1']], body: bytes('hi') }]);
  assert.deepEqual(sent.request, host.calls.sent[0]);
  assert.equal(sent.response.status, 200);
  assert.equal(sent.error, undefined);
});

test('send returns an http-error as {error}, and rethrows anything else', () => {
  host.reset();
  host.answerWith(() => {
    throw host.httpError({ tag: 'connect', val: 'connection refused' });
  });
  const sent = send({ method: 'GET', url: URL });
  assert.deepEqual({ ...sent.error }, { tag: 'connect', val: 'connection refused' });
  assert.equal(sent.response, undefined);
  assert.equal(sent.request.url, URL);

  host.answerWith(() => {
    throw new RangeError('a bug in the plugin');
  });
  assert.throws(() => send({ method: 'GET', url: URL }), { name: 'RangeError', message: 'a bug in the plugin' });
});
