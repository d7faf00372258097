"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for the HTTP judge's tests (no network).

It reads the judge's user message through TEMPLATE, answers by a rule (`answer(prompt, a, b)`), records every
request (path, headers, JSON body) and can fail its first calls: HTTP `fail_status` with `fail_body` (and
`retry_after`), or `fail_status=None`, which closes the connection without a response. `respond` answers
every request itself (a status, a body and optional headers: a redirect's Location).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEMPLATE = "PROMPT<{prompt}>\nFIRST<{a}>\nSECOND<{b}>\nAnswer A, B or tie."


def parse_question(content: str) -> tuple[str, str, str]:
    """(prompt, first, second) of a message rendered from TEMPLATE."""
    prompt = content[content.index("PROMPT<") + 7 : content.index(">\nFIRST<")]
    first = content[content.index("FIRST<") + 6 : content.index(">\nSECOND<")]
    second = content[content.index("SECOND<") + 7 : content.index(">\nAnswer")]
    return prompt, first, second


def longer_wins(prompt: str, a: str, b: str) -> str:
    return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"


def chat_response(content: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


@dataclass
class ChatServer:
    answer: Callable[[str, str, str], str] = longer_wins
    fail: int = 0
    fail_status: int | None = 503
    fail_body: bytes = b'{"error": {"message": "overloaded"}}'
    retry_after: str | None = None
    # overrides the rule: (status, body) or (status, body, {header: value})
    respond: Callable[[dict], tuple[int, bytes] | tuple[int, bytes, dict[str, str]]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:  # a client that followed a redirect may arrive as a GET: record it too
                with server._lock:
                    server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers),
                                            "body": None})
                self._send(405, b'{"error": {"message": "POST only"}}')

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                            "body": body})
                    failing = len(server.requests) <= server.fail
                if failing and server.fail_status is None:
                    self.close_connection = True  # no status line: the client sees the connection drop
                    return
                if failing:
                    self._send(server.fail_status, server.fail_body, server.retry_after)
                elif server.respond is not None:
                    self._send(*server.respond(body))
                else:
                    content = body["messages"][-1]["content"]
                    reply = server.answer(*parse_question(content))
                    self._send(200, json.dumps(chat_response(reply)).encode())

            def _send(self, status: int, payload: bytes, extra: str | dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                extra = {"Retry-After": extra} if isinstance(extra, str) else extra or {}
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # a short poll interval: shutdown() waits for one, and every test shuts its servers down
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def questions(self) -> list[tuple[str, str, str]]:
        """(prompt, first, second) of every request, in arrival order."""
        return [parse_question(r["body"]["messages"][-1]["content"]) for r in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
