"""A Python plugin whose exceptions escape on purpose, chosen by `settings.throw_in`.
The tests use it to prove that what CPython prints when it dies (the exception's
type, message and traceback) reaches the host's log, and that a guest's stdout
and stderr do too.

| `settings` | what it does |
|---|---|
| `{"throw_in": "init"}` | `init` raises `RuntimeError("py-throws: boom in init")` (a trap, not an init error) |
| `{"throw_in": "deliver"}` | `deliver` prints one line to stdout and one to stderr, then raises `RuntimeError("py-throws: boom in deliver")` from a nested function (two frames) |
| `{}` | `deliver` prints the same two lines and returns delivered, sending nothing |

Build: `make examples` (target/release/test-plugins/py-throws.wasm).
"""

import json
import sys

from wit_world import exports
from wit_world.imports.types import Message, Outcome, Outcome_Delivered


class Sink(exports.Sink):
    throw_in: str | None = None

    def init(self, config: str) -> None:
        Sink.throw_in = (json.loads(config).get("settings") or {}).get("throw_in")
        if Sink.throw_in == "init":
            raise RuntimeError("py-throws: boom in init")

    def deliver(self, msg: Message) -> Outcome:
        print("py-throws: stdout line")
        print("py-throws: stderr line", file=sys.stderr)
        if Sink.throw_in == "deliver":
            explode()
        return Outcome_Delivered()


def explode() -> None:
    raise RuntimeError("py-throws: boom in deliver")
