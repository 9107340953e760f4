"""A sinkhost sink plugin in Python: `order.*` events become a Slack message.

The body is what a Slack incoming webhook takes: `{"text": ..., "blocks": [...]}`
with Block Kit blocks (a header, the order's fields, the message id as context);
`text` is the notification fallback. A payload that is not JSON but is UTF-8 text
is posted as a plain-text message; one that is not text at all is rejected.

Built with componentize-py (see ../README.md) together with the Python helper
`sdk/python/sinkhost.py`, which checks the request, forwards the trace context
and decides the outcome; the host provides `http.send` and `log.log`.
"""

import json

import sinkhost
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Message, Outcome, Outcome_Reject, Outcome_Retry

KNOWN_SETTINGS = ("fields",)
OWN_HEADERS = ("content-type", "idempotency-key")
# Block Kit limits: a section holds at most 10 fields of at most 2000 characters.
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000


class Config:
    """What `init` accepted: where to POST, what to send along, what to show."""

    def __init__(self, url: str, headers: list[tuple[str, str]], fields: list[str] | None):
        self.url = url
        self.headers = headers
        self.fields = fields


def parse_config(text: str) -> Config:
    """`init` failures are `result::err(string)`: `Err` is raised, never another exception."""
    config = sinkhost.parse_config(text, KNOWN_SETTINGS, plugin="python-slack")
    fields = config.settings.get("fields")
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
    ):
        raise Err("python-slack: `settings.fields` must be a list of payload field names")
    headers = [(name, value) for name, value in config.headers if name.lower() not in OWN_HEADERS]
    return Config(config.url, headers, fields)


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
        request = sinkhost.request(
            "POST",
            config.url,
            headers=[*config.headers, ("Content-Type", "application/json"), ("Idempotency-Key", msg.id)],
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        )
        # With the message's trace context; 2xx delivered, 408/425/429/5xx and
        # network errors retried (after Retry-After), other statuses and a
        # request the host denies rejected, all but delivered logged.
        return sinkhost.deliver(msg, request, destination="Slack webhook")
