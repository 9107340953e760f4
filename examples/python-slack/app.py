"""A sinkhost sink plugin in Python: `order.*` events become a Slack message.

The body is what a Slack incoming webhook takes: `{"text": ..., "blocks": [...]}`
with Block Kit blocks (a header, the order's fields, the message id as context);
`text` is the notification fallback. A payload that is not JSON but is UTF-8 text
is posted as a plain-text message; one that is not text at all is rejected.

Built with componentize-py (see ../README.md): the host provides `http.send` and
`log.log`, everything else is plain Python.
"""

import json
import re
import time
from email.utils import parsedate_to_datetime

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log
from wit_world.imports.types import (
    Message,
    Outcome,
    Outcome_Delivered,
    Outcome_Reject,
    Outcome_Retry,
)

KNOWN_SETTINGS = ("fields",)
OWN_HEADERS = ("content-type", "idempotency-key")
# Block Kit limits: a section holds at most 10 fields of at most 2000 characters.
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
# A W3C `traceparent` (version 00); an invalid one must not be forwarded.
TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


class Config:
    """What `init` accepted: where to POST, what to send along, what to show."""

    def __init__(self, url: str, headers: list[tuple[str, str]], fields: list[str] | None):
        self.url = url
        self.headers = headers
        self.fields = fields


def invalid(message: str) -> Err:
    """`init` failures are `result::err(string)`: raise `Err`, never another exception."""
    return Err(f"python-slack: {message}")


def parse_config(text: str) -> Config:
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
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise invalid("`webhook.url` must be an http:// or https:// URL")
    configured = webhook.get("headers") or {}
    if not isinstance(configured, dict):
        raise invalid("`webhook.headers` must be a map of strings")
    headers = []
    for name, value in configured.items():
        if not isinstance(value, str):
            raise invalid(f"`webhook.headers.{name}` must be a string")
        if name.lower() not in OWN_HEADERS:
            headers.append((name, value))
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise invalid("`settings` must be a map")
    unknown = sorted(set(settings) - set(KNOWN_SETTINGS))
    if unknown:
        raise invalid(f"unknown setting `{unknown[0]}` (known: {', '.join(KNOWN_SETTINGS)})")
    fields = settings.get("fields")
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
    ):
        raise invalid("`settings.fields` must be a list of payload field names")
    return Config(url, headers, fields)


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def display(value) -> str:
    """A field's value as Slack shows it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def order_message(subject: str, order: dict, message_id: str, fields: list[str] | None) -> dict:
    """The Slack message for one order event."""
    event = subject[len("order."):]
    title = f"Order {display(order['order_id'])} {event}" if "order_id" in order else f"Order {event}"
    names = fields if fields is not None else [k for k in order if k != "order_id"]
    shown = [
        {"type": "mrkdwn", "text": f"*{escape(name)}*\n{escape(display(order[name]))}"[:MAX_FIELD_CHARS]}
        for name in names
        if name in order
    ][:MAX_FIELDS]
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    if shown:
        blocks.append({"type": "section", "fields": shown})
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"message id `{escape(message_id)}`"}]}
    )
    return {"text": title, "blocks": blocks}


def text_message(subject: str, text: str) -> dict:
    """A payload that is text but not a JSON object, posted as it is."""
    return {"text": f"{escape(subject)}: {escape(text)}"}


def retry_after_ms(headers: list[tuple[str, str]]) -> int | None:
    """`Retry-After` (delta-seconds or an HTTP date) in milliseconds, if present."""
    value = next((v.strip() for k, v in headers if k == "retry-after"), None)
    if value is None:
        return None
    if value.isdigit():
        return int(value) * 1000
    try:
        at = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0, int((at - time.time()) * 1000))


def trace_context(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The message's `traceparent`/`tracestate` headers, when its traceparent is valid."""
    parent = next((v for k, v in headers if k.lower() == "traceparent"), "")
    if not TRACEPARENT.fullmatch(parent):
        return []
    return [(k, v) for k, v in headers if k.lower() in ("traceparent", "tracestate")]


def classify(response: http.Response, msg: Message) -> Outcome:
    """What the destination's status means for the message."""
    status = response.status
    if 200 <= status < 300:
        return Outcome_Delivered()
    log.log(log.Level.WARN, f"Slack webhook answered HTTP {status} (attempt {msg.attempt}/{msg.max_attempts})")
    if status == 429 or status >= 500:
        return Outcome_Retry(retry_after_ms(response.headers))
    return Outcome_Reject(f"Slack webhook answered HTTP {status}")


def classify_error(error: http.HttpError) -> Outcome:
    """A failed `http.send`: the host refused (denied) never heals, the rest may."""
    detail = f": {error.value}" if getattr(error, "value", None) else ""
    kind = type(error).__name__.removeprefix("HttpError_").lower()
    log.log(log.Level.WARN, f"Slack webhook not reached: {kind}{detail}")
    if isinstance(error, http.HttpError_Denied):
        return Outcome_Reject(f"the host denied the request{detail}")
    return Outcome_Retry(None)


class Sink(exports.Sink):
    config: Config | None = None

    def init(self, config: str) -> None:
        Sink.config = parse_config(config)

    def deliver(self, msg: Message) -> Outcome:
        config = Sink.config
        if config is None:
            return Outcome_Retry(None)
        if not msg.subject.startswith("order."):
            return Outcome_Reject(f"python-slack formats order.* events, not {msg.subject}")
        try:
            text = msg.payload.decode("utf-8")
        except UnicodeDecodeError as err:
            return Outcome_Reject(f"payload is neither JSON nor UTF-8 text: {err}")
        try:
            order = json.loads(text)
        except ValueError:
            order = None
        if isinstance(order, dict):
            body = order_message(msg.subject, order, msg.id, config.fields)
        else:
            body = text_message(msg.subject, text)
        request = http.Request(
            method=http.Method_Post(),
            url=config.url,
            headers=[
                *config.headers,
                ("Content-Type", "application/json"),
                ("Idempotency-Key", msg.id),
                *trace_context(msg.headers),
            ],
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        )
        try:
            response = http.send(request)
        except Err as err:
            return classify_error(err.value)
        return classify(response, msg)
