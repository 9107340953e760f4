"""{{name}}: a sinkhost sink plugin in Python. POSTs each message to `webhook.url`
as the standard JSON envelope, with the configured headers.

Build (in a venv: PEP 668 systems refuse a bare `pip install`):
    python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/componentize-py -d wit -w sink-plugin componentize app -o {{name}}.wasm
Try:
    sinkhost plugin test ./{{name}}.wasm --subject order.completed --payload order.json --dry-run

`sinkhost.py` (next to this file) checks requests, decides outcomes and builds
the envelope; its docstrings say how. It and `wit/` are bundled by
componentize-py; keep them in this folder.
"""

import sinkhost
from wit_world import exports
from wit_world.imports.types import Message, Outcome

# The keys `settings:` may have; any other fails `sinkhost check`.
KNOWN_SETTINGS = ()


class Sink(exports.Sink):
    # On the class, not the instance: `deliver` may not run on the object `init` ran on.
    url: str = ""
    headers: list[tuple[str, str]] = []

    def init(self, config: str) -> None:
        # Raises componentize_py_types.Err (an init error, never a trap) for a
        # non-http(s) webhook.url, a header that is not a string, an unknown setting.
        parsed = sinkhost.parse_config(config, KNOWN_SETTINGS, plugin="{{name}}")
        Sink.url = parsed.url
        Sink.headers = parsed.headers

    def deliver(self, msg: Message) -> Outcome:
        request = sinkhost.request(
            "POST",
            Sink.url,
            headers=[*Sink.headers, ("Content-Type", "application/json"), ("Idempotency-Key", msg.id)],
            body=sinkhost.envelope(msg),
        )
        # Sends it with the message's traceparent/tracestate. 2xx: delivered;
        # 408, 425, 429, 5xx, timeout, connect errors: retry (after Retry-After);
        # any other status or a request the host denies: reject. Logs all but delivered.
        return sinkhost.deliver(msg, request)
