"""A sinkhost sink plugin in Python: POSTs each message as JSON to `webhook.url`
with the configured headers.

Build: pip install -r requirements.txt
       componentize-py -d wit -w sink-plugin componentize app -o {{name}}.wasm
Try:   sinkhost plugin test ./{{name}}.wasm --subject order.completed --payload order.json --dry-run
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import http, log
from wit_world.imports.types import Message, Outcome, Outcome_Delivered, Outcome_Reject, Outcome_Retry


class Sink(exports.Sink):
    url: str = ""
    headers: list[tuple[str, str]] = []

    def init(self, config: str) -> None:
        # init returns result<_, string>: raise Err(str), never another exception.
        raw = json.loads(config)
        url = (raw.get("webhook") or {}).get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Err("webhook.url must be an http(s) URL")
        for key in raw.get("settings") or {}:
            raise Err(f"unknown setting {key}")
        Sink.url = url
        Sink.headers = list((raw["webhook"].get("headers") or {}).items())

    def deliver(self, msg: Message) -> Outcome:
        try:
            data = json.loads(bytes(msg.payload).decode("utf-8"))
        except ValueError:
            return Outcome_Reject("payload is not JSON")
        body = json.dumps({"subject": msg.subject, "data": data, "message_id": msg.id})
        request = http.Request(
            method=http.Method_Post(),
            url=Sink.url,
            headers=Sink.headers + [("Content-Type", "application/json"), ("Idempotency-Key", msg.id)],
            body=body.encode(),
        )
        try:
            response = http.send(request)
        except Err as err:
            # err.value is the typed http-error: denied never heals, the rest may.
            log.log(log.Level.WARN, f"not sent: {err.value}")
            if isinstance(err.value, http.HttpError_Denied):
                return Outcome_Reject("denied by the host")
            return Outcome_Retry(None)
        if 200 <= response.status < 300:
            return Outcome_Delivered()
        return Outcome_Retry(None)
