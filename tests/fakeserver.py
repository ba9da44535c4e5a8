"""A small OpenAI-compatible chat server for tests, with scripted faults.

``FakeOpenAIServer`` listens on 127.0.0.1 (random port) in a background thread and answers
``POST /v1/chat/completions`` and ``GET /v1/models``. Each chat request takes the next
:class:`Action` of its script; with the script empty, ``responder(request_body)`` gives the
reply text (or an :class:`Action`, to fail chosen requests). Every chat request is counted
and its body kept, so tests can check how many HTTP calls a run made (client retries
included).

>>> with FakeOpenAIServer(responder=lambda body: "Rating: [[7]]") as server:
...     server.push(Action.error(429, retry_after="0"))  # first call rate-limited
...     # point the client at server.base_url
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], "str | None | Action"]


@dataclass(frozen=True)
class Action:
    """How to answer one chat request.

    Attributes:
        status: HTTP status code.
        content: message text of a 200 chat completion (None: ``content: null``).
        body: a raw body sent instead of a chat completion.
        content_type: of ``body``.
        headers: extra response headers (e.g. ``Retry-After``).
        delay: seconds to wait before answering (a slow or hung server).
    """

    status: int = 200
    content: str | None = None
    body: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def reply(cls, content: str | None, delay: float = 0.0) -> Action:
        return cls(content=content, delay=delay)

    @classmethod
    def error(cls, status: int, retry_after: str | None = None) -> Action:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = json.dumps({"error": {"message": f"fake error {status}", "type": "fake"}})
        return cls(status=status, body=body.encode(), headers=headers)

    @classmethod
    def raw(cls, body: str, content_type: str = "text/html") -> Action:
        return cls(body=body.encode(), content_type=content_type)


def user_message(body: dict[str, Any]) -> str:
    """The last user message of a chat request."""
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def completion(content: str | None, model: str) -> dict[str, Any]:
    """A chat-completion body holding ``content``."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class FakeOpenAIServer:
    """Scripted OpenAI-compatible server on loopback; use as a context manager.

    Args:
        responder: reply text (or an Action) for a request body once the script is empty.
        latency: seconds added to every chat request (for concurrency measurements).
    """

    def __init__(self, responder: Responder = lambda body: "Rating: [[5]]", latency: float = 0.0):
        self.responder = responder
        self.latency = latency
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        # A short poll interval makes shutdown() quick (the default waits up to 0.5 s).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def count(self) -> int:
        """Chat requests received so far."""
        with self._lock:
            return len(self.requests)

    def push(self, *actions: Action) -> None:
        """Append actions to the script; each answers one chat request, in order."""
        with self._lock:
            self._script.extend(actions)

    def next_action(self, body: dict[str, Any]) -> Action:
        with self._lock:
            self.requests.append(body)
            if self._script:
                return self._script.popleft()
        reply = self.responder(body)
        return reply if isinstance(reply, Action) else Action.reply(reply)

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self):
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, b'{"error": {"message": "not found"}}')
            body = {"object": "list", "data": [{"id": "fake-judge", "object": "model"}]}
            self._send(200, json.dumps(body).encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, b'{"error": {"message": "not found"}}')
            action = server.next_action(request)
            time.sleep(server.latency + action.delay)
            if action.body is not None:
                return self._send(action.status, action.body, action.content_type, action.headers)
            payload = completion(action.content, request.get("model", "fake-judge"))
            self._send(action.status, json.dumps(payload).encode(), headers=action.headers)

        def _send(self, status, body, content_type="application/json", headers=None):
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (timeout tests)

    return Handler
