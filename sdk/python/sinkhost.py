"""Helpers for sinkhost sink plugins written in Python (componentize-py).

What every plugin needs besides its own format: a request that is checked
before it crosses into the host (a wrong type fails here, with its name, not
deep in the component's lowering code), the standard outcome policy for what
came back, the message's W3C trace context, `Retry-After`, and the JSON
envelope of the built-in `http-webhook` plugin. It mirrors the Rust SDK
(`sdk/src/`): `deliver` is `http::deliver`, `envelope` is `envelope`.

It does not parse your settings' values nor build your destination's format;
`parse_config` only checks the parts every plugin shares.

The bindings (`wit_world`, `componentize_py_types`) are imported eagerly:
componentize-py generates them into every component, and outside one
`componentize-py -d wit -w sink-plugin bindings DIR` writes the same modules
(the host calls, `http.send` and `log.log`, are stubs there), so the unit
tests run against the real generated classes.
"""

import base64
import calendar
import json
import re
import time

from componentize_py_types import Err
from wit_world.imports import http, log
from wit_world.imports.types import Outcome_Delivered, Outcome_Reject, Outcome_Retry

__all__ = [
    "Config",
    "classify",
    "deliver",
    "describe",
    "envelope",
    "outcome",
    "parse_config",
    "request",
    "retry_after_ms",
    "send",
    "summary",
    "trace_context",
]

_METHODS = {
    "GET": http.Method_Get,
    "HEAD": http.Method_Head,
    "POST": http.Method_Post,
    "PUT": http.Method_Put,
    "PATCH": http.Method_Patch,
    "DELETE": http.Method_Delete,
    "OPTIONS": http.Method_Options,
}
_METHOD_TYPES = (*_METHODS.values(), http.Method_Other)
# RFC 9110 section 5.6.2: a method is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_U64_MAX = 2**64 - 1
# The statuses that may heal with time: a timeout, "too early", rate limiting.
_RETRY_4XX = (408, 425, 429)
_MAX_SUMMARY_CHARS = 200


def request(method, url, headers=(), body=b""):
    """The WIT `http.Request` for `method` and `url`, checked so that a wrong
    type fails here with a `TypeError` (or `ValueError`) naming what is wrong.

    - `method`: `"GET"`, `"POST"`, ... (case-insensitive) map to the
      `http.Method_*` cases; any other token becomes `http.Method_Other`.
      An `http.Method_*` value is taken as it is.
    - `url`: a `str` starting with `http://` or `https://`.
    - `headers`: `(name, value)` pairs of `str`, in order (a name may repeat),
      or a `dict` of `str` values. Values never appear in error messages.
    - `body`: `bytes`, `bytearray` or `memoryview`, or a `str` (sent as UTF-8).
      A `dict` or `list` is refused: `json.dumps` it first.
    """
    return http.Request(
        method=_method(method),
        url=_url(url),
        headers=_headers(headers),
        body=_body(body),
    )


def send(req):
    """Sends `req` (from `request`, or an `http.Request` you built, checked
    the same way) through the host and returns the `http.Response`: any
    status, 4xx and 5xx included. Raises `componentize_py_types.Err` when no
    response arrived; its `.value` is the typed `http.HttpError_*`.
    """
    if not isinstance(req, http.Request):
        raise TypeError(f"send takes an http.Request (see sinkhost.request), not {_type(req)}")
    return http.send(request(req.method, req.url, req.headers, req.body))


def deliver(msg, req, destination=None):
    """Sends `req` on behalf of `msg` and returns the `Outcome` that `outcome`
    gives for the result, with the message's trace context added to the
    request (unless it sets its own `traceparent`). Like the Rust SDK's
    `http::deliver`: anything but delivered is logged as a warning.

    `destination` names the receiver in reject reasons and log lines
    (e.g. `"Slack webhook"`); by default it is the URL's host, with its port
    when the URL has one (never its path or query, which may be secret).
    """
    if not isinstance(req, http.Request):
        raise TypeError(f"deliver takes an http.Request (see sinkhost.request), not {_type(req)}")
    headers = _headers(req.headers)
    if not any(name.lower() == "traceparent" for name, _ in headers):
        headers += trace_context(msg)
    sent = http.Request(req.method, req.url, headers, req.body)
    try:
        result = send(sent)
    except Err as err:
        result = err
    return outcome(result, msg, destination or _authority(sent.url))


def classify(status):
    """What an HTTP status means for the message:

    - `"delivered"` for 2xx;
    - `"retry"` for 408, 425, 429 and 5xx (the destination may accept it later);
    - `"reject"` for everything else (1xx, 3xx: redirects are not followed,
      and every other 4xx: the request itself is wrong).
    """
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"status must be an int, not {_type(status)}")
    if 200 <= status < 300:
        return "delivered"
    if status in _RETRY_4XX or 500 <= status < 600:
        return "retry"
    return "reject"


def outcome(result, msg, destination="the destination"):
    """The `Outcome` for what `send` gave, by `classify`'s policy:

    - a response: 2xx `Outcome_Delivered()`; a retry status
      `Outcome_Retry(retry_after_ms(response))`; any other
      `Outcome_Reject("<destination> answered HTTP 404: <start of the body>")`;
    - an `Err` from `send` (or its `http.HttpError_*` value): `denied` rejects
      (the host will never send it), `timeout`, `connect` and `other` are
      `Outcome_Retry(None)`, the subscription's backoff.

    Anything but delivered is logged as a warning naming the message id and
    the attempt, e.g. `message nats-msg-7: shop.example:443 answered HTTP 503,
    attempt 2/4`.
    """
    if isinstance(result, Err):
        result = result.value
    if isinstance(result, http.Response):
        verdict = classify(result.status)
        if verdict == "delivered":
            return Outcome_Delivered()
        text = f"{destination} answered {summary(result)}"
        decided = Outcome_Retry(retry_after_ms(result)) if verdict == "retry" else Outcome_Reject(text)
    elif isinstance(result, (http.HttpError_Timeout, http.HttpError_Connect, http.HttpError_Other)):
        text = describe(result)
        decided = Outcome_Retry(None)
    elif isinstance(result, http.HttpError_Denied):
        text = describe(result)
        decided = Outcome_Reject(text)
    else:
        raise TypeError(f"outcome takes an http.Response or the Err that send raised, not {_type(result)}")
    log.log(log.Level.WARN, f"message {msg.id}: {text}, attempt {msg.attempt}/{msg.max_attempts}")
    return decided


def describe(error):
    """A one-line description of an `http.HttpError_*` (or the `Err` holding
    one), worded like the Rust SDK's: `connection failed: ...`."""
    if isinstance(error, Err):
        error = error.value
    if isinstance(error, http.HttpError_Timeout):
        return "no response within the subscription's timeout"
    if isinstance(error, http.HttpError_Connect):
        return f"connection failed: {error.value}"
    if isinstance(error, http.HttpError_Denied):
        return f"request denied by the host: {error.value}"
    if isinstance(error, http.HttpError_Other):
        return f"request failed: {error.value}"
    raise TypeError(f"describe takes an http.HttpError_* value, not {_type(error)}")


def summary(response, max_chars=_MAX_SUMMARY_CHARS):
    """`HTTP 404: <body>` on one line: the status and the start of the body
    (at most `max_chars` characters, decoded leniently, `…` when cut)."""
    body = bytes(response.body).decode("utf-8", errors="replace").strip()
    out = f"HTTP {response.status}"
    if body and max_chars > 0:
        shown = body[:max_chars].translate({ord("\r"): " ", ord("\n"): " ", ord("\t"): " "})
        out += f": {shown}{'…' if len(body) > max_chars else ''}"
    return out


def retry_after_ms(response, now_ms=None):
    """The delay the destination asked for with `Retry-After`, in
    milliseconds: delay-seconds (`120` -> 120000) or an HTTP-date, measured
    against `now_ms` (default: the wall clock; a date in the past is 0).
    `None` when the header is missing or unparseable.
    """
    value = next((v for k, v in response.headers if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        # Saturate: a huge number means "a very long time", not garbage.
        return min(int(value) * 1000, _U64_MAX)
    at = _http_date_ms(value)
    if at is None:
        return None
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    return max(0, at - now_ms)


def trace_context(msg):
    """The message's W3C trace context as header pairs to send on:
    `[("traceparent", ...), ("tracestate", ...)]`, or `[]` when the message
    has no `traceparent`, more than one, or an invalid one (the spec forbids
    forwarding it). `tracestate` is left out when absent or when it is not
    printable ASCII; repeated `tracestate` headers are joined with `,`. The
    same rule as the Rust SDK's and the host's, so the host's log has a
    `trace_id` exactly when the destination got the trace.
    """
    ows = " \t"
    parents = [v.strip(ows) for k, v in msg.headers if k.lower() == "traceparent"]
    if len(parents) != 1 or not _valid_traceparent(parents[0]):
        return []
    out = [("traceparent", parents[0])]
    states = [v.strip(ows) for k, v in msg.headers if k.lower() == "tracestate"]
    states = [s for s in states if s]
    if states and all(re.fullmatch(r"[\t -~]*", s) for s in states):
        out.append(("tracestate", ",".join(states)))
    return out


def envelope(msg):
    """The JSON envelope the built-in `http-webhook` plugin POSTs, as bytes:

        {"subject":"order.completed","data":{"id":42},"timestamp":"2026-04-21T08:09:50Z","message_id":"nats-msg-7"}

    `timestamp` is the JetStream store time (`msg.published_ms`), RFC 3339
    UTC to the second. `data` is the payload itself when it is valid JSON
    (checked with `json.loads`, then embedded byte for byte with surrounding
    whitespace trimmed, never re-serialized: key order, `1.50` and big numbers
    stay the producer's, as in the Rust SDK); else, when it is UTF-8, the
    payload as a JSON string; else `data` is left out and `data_base64`
    (standard alphabet, padded) holds the bytes.
    """
    payload = bytes(msg.payload)
    parts = [f'{{"subject":{_json_str(msg.subject)}']
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        parts.append(f'"data_base64":{_json_str(base64.b64encode(payload).decode("ascii"))}')
    else:
        data = text.strip(" \t\n\r")
        parts.append(f'"data":{data if _is_json(data) else _json_str(text)}')
    parts.append(f'"timestamp":{_json_str(_rfc3339(msg.published_ms))}')
    parts.append(f'"message_id":{_json_str(msg.id)}}}')
    return ",".join(parts).encode("utf-8")


class Config:
    """What `parse_config` accepted from `init`'s JSON.

    - `subscription`: the subscription's name;
    - `url`: `webhook.url`, http(s);
    - `headers`: `webhook.headers` as `(name, value)` pairs, in order;
    - `settings`: the `settings` block, a `dict` holding only known keys.
    """

    def __init__(self, subscription, url, headers, settings):
        self.subscription = subscription
        self.url = url
        self.headers = headers
        self.settings = settings


def parse_config(text, known_settings=(), plugin=None):
    """Parses the JSON `init` receives and checks what every plugin shares:
    `webhook.url` is an http(s) URL, `webhook.headers` maps names to strings,
    `settings` holds only `known_settings`. Anything else raises
    `componentize_py_types.Err` (an init error, which `sinkhost check` reports
    with the subscription's file and line), prefixed with `plugin: ` when
    given. Checking the settings' values is yours; raise `Err` for those too.
    """

    def invalid(reason):
        return Err(f"{plugin}: {reason}" if plugin else reason)

    try:
        raw = json.loads(text)
    except ValueError as err:
        raise invalid(f"config is not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise invalid("config is not a JSON object")
    webhook = raw.get("webhook")
    if not isinstance(webhook, dict):
        raise invalid("`webhook` is missing")
    url = webhook.get("url")
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise invalid("`webhook.url` must be an http:// or https:// URL")
    configured = webhook.get("headers") or {}
    if not isinstance(configured, dict):
        raise invalid("`webhook.headers` must be a map of strings")
    for name, value in configured.items():
        if not isinstance(value, str):
            raise invalid(f"`webhook.headers.{name}` must be a string")
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise invalid("`settings` must be a map")
    unknown = sorted(set(settings) - set(known_settings))
    if unknown:
        known = ", ".join(known_settings) or "none"
        raise invalid(f"unknown setting `{unknown[0]}` (known: {known})")
    return Config(raw.get("subscription"), url, list(configured.items()), settings)


def _type(value):
    return type(value).__name__


def _method(method):
    if isinstance(method, _METHOD_TYPES):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a str such as 'POST' or an http.Method_* value, not {_type(method)}")
    known = _METHODS.get(method.upper())
    if known is not None:
        return known()
    if not _TOKEN.fullmatch(method):
        raise ValueError(f"method {method!r} is not an HTTP method name")
    return http.Method_Other(method)


def _url(url):
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {_type(url)}")
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("url must start with http:// or https://")
    return url


def _headers(headers):
    if isinstance(headers, dict):
        pairs = list(headers.items())
    elif isinstance(headers, (list, tuple)):
        pairs = list(headers)
    else:
        raise TypeError(f"headers must be a list of (name, value) pairs or a dict, not {_type(headers)}")
    out = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"headers[{i}] must be a (name, value) pair of str, not {_type(pair)}")
        name, value = pair
        if not isinstance(name, str):
            raise TypeError(f"headers[{i}]: the name must be a str, not {_type(name)}")
        if not isinstance(value, str):
            raise TypeError(f"header {name!r}: the value must be a str, not {_type(value)}")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header {name!r}: not a valid header name")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r}: the value contains CR, LF or NUL")
        out.append((name, value))
    return out


def _body(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            # json.loads turns a "\ud800" escape into a lone surrogate, which UTF-8 cannot hold.
            raise ValueError("body is a str that is not valid UTF-8 (a lone surrogate?)") from None
    if isinstance(body, (dict, list, tuple)):
        raise TypeError(f"body must be bytes or str, not {_type(body)}; json.dumps(...) a {_type(body)} first")
    raise TypeError(f"body must be bytes or str, not {_type(body)}")


def _authority(url):
    """`host:port` of `url`, without credentials, path or query (which may be secret)."""
    rest = url.split("://", 1)[-1]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return authority.rsplit("@", 1)[-1]


def _json_str(text):
    return json.dumps(text, ensure_ascii=False)


def _reject_constant(name):
    # NaN and Infinity are Python's extension, not JSON.
    raise ValueError(f"{name} is not JSON")


def _is_json(text):
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _rfc3339(ms):
    t = time.gmtime(ms // 1000)
    return (
        f"{t.tm_year:04}-{t.tm_mon:02}-{t.tm_mday:02}"
        f"T{t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02}Z"
    )


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _http_date_ms(value):
    """An HTTP-date (RFC 9110 section 5.6.7) in ms since the epoch, or None.
    All three forms: `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94
    08:49:37 GMT`, `Sun Nov  6 08:49:37 1994`; in each the first number is the
    day and the second the year (the Rust SDK's tokenizer, `sdk/src/time.rs`).
    """
    month, clock, numbers = None, None, []
    for token in filter(None, re.split(r"[ ,\-]", value)):
        if ":" in token:
            clock = token
        elif re.fullmatch(r"[0-9]+", token):
            numbers.append(token)
        elif token.lower() in _MONTHS:
            month = _MONTHS.index(token.lower()) + 1
        # Anything else is the weekday or the zone ("GMT"), which carry nothing.
    if len(numbers) != 2 or month is None or clock is None:
        return None
    day, year = int(numbers[0]), numbers[1]
    if not 1 <= day <= 31:
        return None
    if len(year) == 2:
        # RFC 850's two-digit year; no server has sent one from before 1970.
        year = int(year) + (2000 if int(year) < 70 else 1900)
    elif len(year) == 4 and int(year) >= 1970:
        year = int(year)
    else:
        return None
    hms = clock.split(":")
    if len(hms) != 3 or not all(re.fullmatch(r"[0-9]+", p) for p in hms):
        return None
    h, m, s = map(int, hms)
    if h > 23 or m > 59 or s > 60:
        return None
    return calendar.timegm((year, month, day, h, m, s)) * 1000


def _valid_traceparent(value):
    """`sdk/trace-context`'s rule: version 00 exactly as specified, or a later
    version whose first 55 characters parse as version 00 does; lower-case
    hex, no all-zero ids, never version `ff`."""
    if len(value) < 55 or not all("!" <= c <= "~" for c in value):
        return False
    version = value[:2]
    if version == "00" and len(value) != 55:
        return False
    if version != "00" and len(value) > 55 and value[55] != "-":
        return False
    head = re.fullmatch(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}", value[:55])
    return bool(head) and version != "ff" and set(head[2]) != {"0"} and set(head[3]) != {"0"}
