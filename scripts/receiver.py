#!/usr/bin/env python3
"""A development webhook receiver: prints every request it gets and answers 200.

Used by `make run` so a newcomer can watch events arrive. Standard library only.
Usage: receiver.py [PORT]   (default 8091, loopback only)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_HEADERS = {"authorization", "x-api-key"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {
            k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()
        }
        try:
            shown = json.dumps(json.loads(body), indent=2)
        except ValueError:
            shown = body.decode("utf-8", "replace")
        print(f"--> {self.command} {self.path}\n{json.dumps(headers, indent=2)}\n{shown}\n", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8091
    print(f"receiver listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
