"""Unit tests for sinkhost.py, natively, against the real componentize-py bindings.

`wit_world` exists only inside a component, so when it is not importable this
module generates it first (`componentize-py -d wit -w sink-plugin bindings`
into a temporary directory, with the componentize-py next to this Python, as
in `.tools/venv`). The host calls are stubs there; the tests replace
`http.send` and `log.log` with recorders.

    .tools/venv/bin/python -m unittest discover -s sdk/python    (or make test-python-sdk)
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WIT = os.path.join(HERE, "..", "..", "wit")


def _bindings():
    try:
        import wit_world  # noqa: F401
        return
    except ImportError:
        pass
    tool = os.path.join(os.path.dirname(sys.executable), "componentize-py")
    if not os.path.exists(tool):
        tool = shutil.which("componentize-py") or sys.exit(
            "componentize-py is missing: .tools/venv/bin/pip install -r templates/python/requirements.txt"
        )
    out = tempfile.mkdtemp(prefix="sinkhost-bindings-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run([tool, "-q", "-d", WIT, "-w", "sink-plugin", "bindings", out], check=True)
    sys.path.insert(0, out)


_bindings()

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import http, log  # noqa: E402
from wit_world.imports.types import Message, Outcome_Delivered, Outcome_Reject, Outcome_Retry  # noqa: E402

import sinkhost  # noqa: E402

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# 2026-04-21T08:09:50.123Z: the envelope's timestamp has second precision.
PUBLISHED_MS = 1_776_758_990_123


def message(payload=b'{"id":42}', headers=(), attempt=1):
    return Message(
        subject="order.completed",
        payload=payload,
        headers=list(headers),
        id="nats-msg-12345",
        published_ms=PUBLISHED_MS,
        attempt=attempt,
        max_attempts=4,
    )


def response(status, headers=(), body=b""):
    return http.Response(status=status, headers=list(headers), body=body)


class Host(unittest.TestCase):
    """Replaces the host's `http.send` and `log.log` for each test."""

    def setUp(self):
        self.sent, self.logged, self.answer = [], [], response(200)
        saved = (http.send, log.log)

        def send(req):
            self.sent.append(req)
            if isinstance(self.answer, Err):
                raise self.answer
            return self.answer

        http.send = send
        log.log = lambda level, text: self.logged.append((level, text))
        self.addCleanup(lambda: (setattr(http, "send", saved[0]), setattr(log, "log", saved[1])))


class RequestTest(unittest.TestCase):
    def test_builds_the_wit_record(self):
        req = sinkhost.request(
            "post", "https://example.com/hook", headers=[("X-A", "1"), ("x-a", "2")], body="héllo"
        )
        self.assertEqual(
            req,
            http.Request(
                method=http.Method_Post(),
                url="https://example.com/hook",
                headers=[("X-A", "1"), ("x-a", "2")],
                body="héllo".encode(),
            ),
        )

    def test_methods(self):
        for name, case in [
            ("GET", http.Method_Get()),
            ("HEAD", http.Method_Head()),
            ("Put", http.Method_Put()),
            ("PATCH", http.Method_Patch()),
            ("DELETE", http.Method_Delete()),
            ("OPTIONS", http.Method_Options()),
            ("PROPFIND", http.Method_Other("PROPFIND")),
            (http.Method_Delete(), http.Method_Delete()),
        ]:
            self.assertEqual(sinkhost.request(name, "http://h/").method, case, name)

    def test_dict_headers_and_byte_bodies(self):
        req = sinkhost.request("GET", "http://h/", headers={"A": "1", "B": "2"}, body=bytearray(b"\x00\xff"))
        self.assertEqual(req.headers, [("A", "1"), ("B", "2")])
        self.assertEqual(req.body, b"\x00\xff")
        self.assertIsInstance(req.body, bytes)
        self.assertEqual(sinkhost.request("GET", "http://h/", body=memoryview(b"ab")).body, b"ab")
        self.assertEqual(sinkhost.request("GET", "http://h/").body, b"")

    def assertRaisesMessage(self, kind, text, **kwargs):
        args = {"method": "POST", "url": "https://example.com/hook", **kwargs}
        with self.assertRaises(kind) as caught:
            sinkhost.request(**args)
        self.assertEqual(str(caught.exception), text)

    def test_wrong_types_raise_type_error_naming_the_field(self):
        self.assertRaisesMessage(
            TypeError, "method must be a str such as 'POST' or an http.Method_* value, not int", method=1
        )
        self.assertRaisesMessage(TypeError, "url must be a str, not bytes", url=b"https://example.com")
        self.assertRaisesMessage(
            TypeError, "headers must be a list of (name, value) pairs or a dict, not str", headers="A: 1"
        )
        self.assertRaisesMessage(
            TypeError, "headers[1] must be a (name, value) pair of str, not str", headers=[("A", "1"), "B: 2"]
        )
        self.assertRaisesMessage(
            TypeError, "headers[0]: the name must be a str, not bytes", headers=[(b"A", "1")]
        )
        self.assertRaisesMessage(
            TypeError, "header 'X-Count': the value must be a str, not int", headers={"X-Count": 3}
        )
        self.assertRaisesMessage(
            TypeError, "header 'X-Count': the value must be a str, not NoneType", headers=[("X-Count", None)]
        )
        self.assertRaisesMessage(
            TypeError, "body must be bytes or str, not dict; json.dumps(...) a dict first", body={"a": 1}
        )
        self.assertRaisesMessage(
            TypeError, "body must be bytes or str, not list; json.dumps(...) a list first", body=[1]
        )
        self.assertRaisesMessage(TypeError, "body must be bytes or str, not int", body=42)

    def test_wrong_values_raise_value_error(self):
        self.assertRaisesMessage(ValueError, "url must start with http:// or https://", url="ftp://example.com")
        self.assertRaisesMessage(ValueError, "method 'NO METHOD' is not an HTTP method name", method="NO METHOD")
        self.assertRaisesMessage(ValueError, "header 'A B': not a valid header name", headers={"A B": "1"})
        self.assertRaisesMessage(
            ValueError, "body is a str that is not valid UTF-8 (a lone surrogate?)", body=json.loads('"\\ud800"')
        )
        # The value may be a secret: the message names the header only.
        self.assertRaisesMessage(
            ValueError, "header 'Authorization': the value contains CR, LF or NUL", headers={"Authorization": "s3\r\nX: y"}
        )


class SendTest(Host):
    def test_checks_a_hand_built_request_before_the_host_sees_it(self):
        bad = http.Request(method=http.Method_Post(), url="https://h/", headers=[("A", 1)], body=b"")
        with self.assertRaisesRegex(TypeError, "header 'A': the value must be a str, not int"):
            sinkhost.send(bad)
        with self.assertRaisesRegex(TypeError, r"send takes an http.Request \(see sinkhost.request\), not dict"):
            sinkhost.send({"url": "https://h/"})
        self.assertEqual(self.sent, [])

    def test_returns_the_response_and_raises_the_typed_error(self):
        self.answer = response(201, body=b"ok")
        self.assertEqual(sinkhost.send(sinkhost.request("GET", "http://h/", body="x")), self.answer)
        self.assertEqual(self.sent[0].body, b"x")
        self.answer = Err(http.HttpError_Timeout())
        with self.assertRaises(Err) as caught:
            sinkhost.send(sinkhost.request("GET", "http://h/"))
        self.assertEqual(caught.exception.value, http.HttpError_Timeout())


class ClassifyTest(unittest.TestCase):
    def test_policy(self):
        expected = {
            100: "reject",
            200: "delivered",
            204: "delivered",
            299: "delivered",
            301: "reject",
            304: "reject",
            400: "reject",
            404: "reject",
            408: "retry",
            422: "reject",
            425: "retry",
            429: "retry",
            500: "retry",
            503: "retry",
            599: "retry",
        }
        self.assertEqual({status: sinkhost.classify(status) for status in expected}, expected)

    def test_status_must_be_an_int(self):
        with self.assertRaisesRegex(TypeError, "status must be an int, not str"):
            sinkhost.classify("200")


class RetryAfterTest(unittest.TestCase):
    DATE = "Tue, 21 Apr 2026 08:09:50 GMT"
    AT = 1_776_758_990_000

    def after(self, value, now_ms=0):
        return sinkhost.retry_after_ms(response(503, [("retry-after", value)]), now_ms=now_ms)

    def test_delay_seconds(self):
        self.assertEqual(self.after("120"), 120_000)
        self.assertEqual(self.after(" 0 "), 0)
        self.assertEqual(self.after("99999999999999999999999"), 2**64 - 1)

    def test_http_date_is_relative_to_now(self):
        self.assertEqual(self.after(self.DATE, now_ms=self.AT - 30_000), 30_000)
        self.assertEqual(self.after("Tuesday, 21-Apr-26 08:09:50 GMT", now_ms=self.AT - 1_000), 1_000)
        self.assertEqual(self.after("Tue Apr 21 08:09:50 2026", now_ms=self.AT), 0)

    def test_past_date_is_zero(self):
        self.assertEqual(self.after(self.DATE, now_ms=self.AT + 5_000), 0)
        self.assertEqual(self.after("Sun, 06 Nov 1994 08:49:37 GMT", now_ms=None), 0)

    def test_future_date_against_the_wall_clock(self):
        delay = self.after("Fri, 31 Dec 9999 23:59:59 GMT", now_ms=None)
        self.assertGreater(delay, 200 * 365 * 86_400_000)

    def test_missing_or_garbage_is_none(self):
        self.assertIsNone(sinkhost.retry_after_ms(response(503, [("x-retry", "5")])))
        for bad in ["", "-5", "1.5", "soon", "120s", "²", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT"]:
            self.assertIsNone(self.after(bad), bad)

    def test_first_header_wins_case_insensitively(self):
        resp = response(429, [("Retry-After", "7"), ("retry-after", "9")])
        self.assertEqual(sinkhost.retry_after_ms(resp), 7_000)


class TraceContextTest(unittest.TestCase):
    def trace(self, *headers):
        return sinkhost.trace_context(message(headers=headers))

    def test_valid_context_is_forwarded(self):
        self.assertEqual(
            self.trace(("Nats-Msg-Id", "m1"), ("Traceparent", PARENT), ("tracestate", "rojo=1,congo=2")),
            [("traceparent", PARENT), ("tracestate", "rojo=1,congo=2")],
        )
        self.assertEqual(self.trace(("traceparent", PARENT)), [("traceparent", PARENT)])
        self.assertEqual(
            self.trace(("traceparent", f" {PARENT}\t"), ("tracestate", "rojo=1"), ("tracestate", " congo=2 ")),
            [("traceparent", PARENT), ("tracestate", "rojo=1,congo=2")],
        )
        later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes"
        self.assertEqual(self.trace(("traceparent", later)), [("traceparent", later)])

    def test_invalid_traceparent_drops_both(self):
        for bad in [
            "",
            "garbage",
            PARENT.upper(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            PARENT + "-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ]:
            self.assertEqual(self.trace(("traceparent", bad), ("tracestate", "rojo=1")), [], bad)

    def test_missing_or_repeated_traceparent_drops_both(self):
        self.assertEqual(self.trace(("tracestate", "rojo=1")), [])
        self.assertEqual(self.trace(("traceparent", PARENT), ("traceparent", PARENT)), [])

    def test_unsendable_tracestate_is_dropped_alone(self):
        self.assertEqual(self.trace(("traceparent", PARENT), ("tracestate", "rojo=é")), [("traceparent", PARENT)])


class EnvelopeTest(unittest.TestCase):
    def envelope(self, payload):
        return sinkhost.envelope(message(payload=payload))

    def test_json_payload_is_embedded_byte_for_byte(self):
        payload = b'  {"z": 1, "a": 18446744073709551616, "f": 1.50}\n'
        self.assertEqual(
            self.envelope(payload),
            b'{"subject":"order.completed","data":{"z": 1, "a": 18446744073709551616, "f": 1.50},'
            b'"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}',
        )
        self.assertIn(b'"data":42,', self.envelope(b"42"))
        self.assertIn(b'"data":"quoted",', self.envelope(b'"quoted"'))
        # Valid JSON that Python would re-serialize as `Infinity`, which is not JSON.
        self.assertIn(b'"data":1e400,', self.envelope(b"1e400"))

    def test_text_payload_becomes_a_json_string(self):
        self.assertEqual(
            self.envelope('héllo "world"\n{'.encode()),
            '{"subject":"order.completed","data":"héllo \\"world\\"\\n{",'
            '"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}'.encode(),
        )
        self.assertIn(b'"data":"",', self.envelope(b""))
        # Python's extensions to JSON are not JSON.
        self.assertIn(b'"data":"NaN",', self.envelope(b"NaN"))

    def test_binary_payload_goes_under_data_base64(self):
        out = self.envelope(bytes([0xFF, 0x00, 0xFE, 0x7B]))
        self.assertEqual(
            out,
            b'{"subject":"order.completed","data_base64":"/wD+ew==",'
            b'"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-12345"}',
        )
        self.assertNotIn("data", json.loads(out))

    def test_every_envelope_is_valid_json(self):
        for payload in [b'{"a":', b"[1,2]", b"null", b"\xc3\x28", b'"\\ud83d\\ude00 \\u00e9"', b"\x00\x01", b"1e400"]:
            json.loads(self.envelope(payload))


class OutcomeTest(Host):
    def outcome(self, result, attempt=1):
        return sinkhost.outcome(result, message(attempt=attempt), "shop.example")

    def test_responses(self):
        self.assertEqual(self.outcome(response(204)), Outcome_Delivered())
        self.assertEqual(self.logged, [], "delivered is not logged")
        self.assertEqual(self.outcome(response(503, [("retry-after", "3")])), Outcome_Retry(3000))
        self.assertEqual(self.outcome(response(500)), Outcome_Retry(None))
        self.assertEqual(self.outcome(response(408)), Outcome_Retry(None))
        self.assertEqual(
            self.outcome(response(404, body=b"  no such\nhook  ")),
            Outcome_Reject("shop.example answered HTTP 404: no such hook"),
        )
        self.assertEqual(self.outcome(response(301)), Outcome_Reject("shop.example answered HTTP 301"))
        long = self.outcome(response(400, body=b"x" * 500)).value
        self.assertEqual(long, "shop.example answered HTTP 400: " + "x" * 200 + "…")

    def test_http_errors(self):
        self.assertEqual(
            self.outcome(Err(http.HttpError_Denied("host not allowed"))),
            Outcome_Reject("request denied by the host: host not allowed"),
        )
        self.assertEqual(
            self.outcome(http.HttpError_Denied("host not allowed")),
            Outcome_Reject("request denied by the host: host not allowed"),
        )
        for error in [http.HttpError_Timeout(), http.HttpError_Connect("refused"), http.HttpError_Other("bad header")]:
            self.assertEqual(self.outcome(Err(error)), Outcome_Retry(None), error)

    def test_anything_not_delivered_is_logged_with_the_attempt(self):
        self.outcome(response(503, body=b"busy"), attempt=2)
        self.outcome(Err(http.HttpError_Connect("refused")), attempt=4)
        self.outcome(Err(http.HttpError_Timeout()), attempt=4)
        self.assertEqual(
            self.logged,
            [
                (log.Level.WARN, "message nats-msg-12345: shop.example answered HTTP 503: busy, attempt 2/4"),
                (log.Level.WARN, "message nats-msg-12345: connection failed: refused, attempt 4/4"),
                (log.Level.WARN, "message nats-msg-12345: no response within the subscription's timeout, attempt 4/4"),
            ],
        )

    def test_anything_else_is_a_type_error(self):
        with self.assertRaisesRegex(TypeError, "outcome takes an http.Response or the Err that send raised, not int"):
            self.outcome(200)


class DeliverTest(Host):
    def test_sends_with_the_trace_context_and_decides(self):
        msg = message(headers=[("traceparent", PARENT), ("tracestate", "rojo=1")])
        req = sinkhost.request("POST", "https://user:pw@shop.example:8443/hook/s3cret?k=v", headers={"A": "1"})
        self.answer = response(422, body=b"bad order")
        self.assertEqual(
            sinkhost.deliver(msg, req), Outcome_Reject("shop.example:8443 answered HTTP 422: bad order")
        )
        self.assertEqual(self.sent[0].headers, [("A", "1"), ("traceparent", PARENT), ("tracestate", "rojo=1")])
        self.assertEqual(req.headers, [("A", "1")], "the caller's request is left as it was")

    def test_a_request_with_its_own_traceparent_keeps_it(self):
        own = "00-11111111111111111111111111111111-2222222222222222-01"
        msg = message(headers=[("traceparent", PARENT)])
        req = sinkhost.request("POST", "https://shop.example/hook", headers=[("Traceparent", own)])
        self.assertEqual(sinkhost.deliver(msg, req, destination="the shop"), Outcome_Delivered())
        self.assertEqual(self.sent[0].headers, [("Traceparent", own)])

    def test_errors_and_named_destinations(self):
        self.answer = Err(http.HttpError_Denied("shop.example is not allowed"))
        req = sinkhost.request("POST", "https://shop.example/hook")
        self.assertEqual(
            sinkhost.deliver(message(), req, destination="the shop"),
            Outcome_Reject("request denied by the host: shop.example is not allowed"),
        )
        self.answer = response(429, [("retry-after", "2")])
        self.assertEqual(sinkhost.deliver(message(), req, destination="the shop"), Outcome_Retry(2000))
        self.assertEqual(self.logged[-1][1], "message nats-msg-12345: the shop answered HTTP 429, attempt 1/4")


class ParseConfigTest(unittest.TestCase):
    def config(self, webhook=None, settings=None, **kwargs):
        raw = {"subscription": "orders", "webhook": webhook or {"url": "https://shop.example/hook"}}
        if settings is not None:
            raw["settings"] = settings
        return sinkhost.parse_config(json.dumps(raw), **kwargs)

    def assertInvalid(self, text, **kwargs):
        with self.assertRaises(Err) as caught:
            self.config(**kwargs)
        self.assertEqual(caught.exception.value, text)

    def test_accepts_a_good_config(self):
        config = self.config(
            webhook={"url": "https://shop.example/hook", "headers": {"Authorization": "Bearer x", "X-A": "1"}},
            settings={"fields": ["total"]},
            known_settings=("fields",),
        )
        self.assertEqual(config.subscription, "orders")
        self.assertEqual(config.url, "https://shop.example/hook")
        self.assertEqual(config.headers, [("Authorization", "Bearer x"), ("X-A", "1")])
        self.assertEqual(config.settings, {"fields": ["total"]})
        self.assertEqual(self.config().settings, {})

    def test_init_errors_are_err_not_exceptions(self):
        self.assertInvalid("`webhook.url` must be an http:// or https:// URL", webhook={"url": "ftp://x/"})
        self.assertInvalid("`webhook.url` must be an http:// or https:// URL", webhook={"headers": {}})
        self.assertInvalid("`webhook.headers.X-A` must be a string", webhook={"url": "http://h/", "headers": {"X-A": 1}})
        self.assertInvalid("unknown setting `colour` (known: none)", settings={"colour": "red"})
        self.assertInvalid(
            "my-sink: unknown setting `colour` (known: fields)",
            settings={"colour": "red", "fields": []},
            known_settings=("fields",),
            plugin="my-sink",
        )
        with self.assertRaises(Err) as caught:
            sinkhost.parse_config("{not json")
        self.assertTrue(caught.exception.value.startswith("config is not JSON: "), caught.exception.value)


if __name__ == "__main__":
    unittest.main()
