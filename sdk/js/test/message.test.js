// envelope() and traceContext(): what a message becomes on the wire.
import test from 'node:test';
import assert from 'node:assert/strict';
import '../testing/register.js';

const { envelope, traceContext } = await import('../sinkhost.js');
const host = await import('../testing/host.js');

/** A message as the host hands it over; the envelope's timestamp has second precision. */
function msg(payload, headers = []) {
  return host.message(payload, { id: 'nats-msg-12345', publishedMs: 1_776_758_990_123n, headers });
}
const TAIL = '"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}';

test('envelope: a JSON payload is embedded byte for byte, not re-serialised', () => {
  // Key order, a 2^64+ integer and `1.50` would all change if re-encoded.
  const payload = '  {"z": 1, "a": 18446744073709551616, "f": 1.50, "2": "x"}\n';
  assert.equal(
    envelope(msg(payload)),
    `{"subject":"order.completed","data":{"z": 1, "a": 18446744073709551616, "f": 1.50, "2": "x"},${TAIL}`,
  );
  assert.equal(envelope(msg('42')), `{"subject":"order.completed","data":42,${TAIL}`);
  assert.equal(envelope(msg('"quoted"')), `{"subject":"order.completed","data":"quoted",${TAIL}`);
  assert.equal(envelope(msg('[1,2]')), `{"subject":"order.completed","data":[1,2],${TAIL}`);
  // A lone surrogate escape is grammatical JSON: it passes through as written.
  assert.equal(envelope(msg('"\\ud800"')), `{"subject":"order.completed","data":"\\ud800",${TAIL}`);
});

test('envelope: UTF-8 that is not JSON becomes an escaped string', () => {
  assert.equal(
    envelope(msg('héllo "world"\n{\u0001')),
    `{"subject":"order.completed","data":"héllo \\"world\\"\\n{\\u0001",${TAIL}`,
  );
  assert.equal(envelope(msg('')), `{"subject":"order.completed","data":"",${TAIL}`);
  // A byte order mark makes the payload text, not JSON (as in the Rust SDK).
  assert.equal(envelope(msg([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), `{"subject":"order.completed","data":"\ufeff{}",${TAIL}`);
});

test('envelope: bytes that are not UTF-8 go under data_base64, without data', () => {
  const out = envelope(msg([0xff, 0x00, 0xfe, 0x7b]));
  assert.equal(out, `{"subject":"order.completed","data_base64":"/wD+ew==",${TAIL}`);
  assert.equal('data' in JSON.parse(out), false);
  const big = new Uint8Array(100_000).fill(0xff);
  assert.deepEqual(new Uint8Array(Buffer.from(JSON.parse(envelope(msg(big))).data_base64, 'base64')), big);
});

test('envelope: timestamp is RFC 3339 UTC to the second, subject and id are escaped', () => {
  const leap = host.message('{}', { publishedMs: 951_782_400_999n, subject: 'order."x"', id: 'a\\b' });
  assert.equal(envelope(leap), '{"subject":"order.\\"x\\"","data":{},"timestamp":"2000-02-29T00:00:00Z","message_id":"a\\\\b"}');
  assert.equal(JSON.parse(envelope(host.message('{}', { publishedMs: 0n }))).timestamp, '1970-01-01T00:00:00Z');
});

test('envelope: every envelope is valid JSON', () => {
  for (const payload of ['{"a":', '[1,2]', 'null', [0xc3, 0x28], '"\\ud83d\\ude00 \\u00e9"', [0, 1], ' \t\r\n']) {
    const out = envelope(msg(payload));
    assert.doesNotThrow(() => JSON.parse(out), out);
  }
});

test('envelope: a payload that is not bytes is a TypeError', () => {
  assert.throws(() => envelope({ ...msg(''), payload: /** @type {any} */ ('{"a":1}') }), {
    name: 'TypeError',
    message: 'envelope takes a message whose payload is a Uint8Array, got a string',
  });
});

const PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const STATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';

test('traceContext: a valid traceparent and its tracestate, whatever the names case', () => {
  assert.deepEqual(traceContext(msg('', [['Nats-Msg-Id', 'x'], ['TraceParent', PARENT], ['TRACESTATE', STATE]])), [
    ['traceparent', PARENT],
    ['tracestate', STATE],
  ]);
  assert.deepEqual(traceContext(msg('', [['traceparent', PARENT]])), [['traceparent', PARENT]]);
  assert.deepEqual(traceContext(msg('', [['traceparent', ` ${PARENT}\t`], ['tracestate', ' rojo=1 ']])), [
    ['traceparent', PARENT],
    ['tracestate', 'rojo=1'],
  ]);
  // A later version may carry more fields after a dash.
  const later = '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes';
  assert.deepEqual(traceContext(msg('', [['traceparent', later]])), [['traceparent', later]]);
});

test('traceContext: several tracestates are joined; one that cannot be sent is dropped', () => {
  const headers = [['traceparent', PARENT], ['tracestate', 'a=1'], ['tracestate', ''], ['tracestate', 'b=2']];
  assert.deepEqual(traceContext(msg('', headers)), [['traceparent', PARENT], ['tracestate', 'a=1,b=2']]);
  assert.deepEqual(traceContext(msg('', [['traceparent', PARENT], ['tracestate', 'a=é']])), [['traceparent', PARENT]]);
});

test('traceContext: nothing for no, several or an invalid traceparent, tracestate included', () => {
  assert.deepEqual(traceContext(msg('', [])), []);
  assert.deepEqual(traceContext(msg('', [['tracestate', STATE]])), []);
  assert.deepEqual(traceContext(msg('', [['traceparent', PARENT], ['traceparent', PARENT]])), []);
  for (const bad of [
    '',
    'garbage',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x',
    '00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1',
    '0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-é',
  ]) {
    assert.deepEqual(traceContext(msg('', [['traceparent', bad], ['tracestate', STATE]])), [], bad);
  }
});
