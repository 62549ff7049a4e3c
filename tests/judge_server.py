"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for judge tests and benchmarks.

It speaks just enough of the API for the real ``openai`` client: ``POST /v1/chat/completions`` (non-streaming)
and ``GET /v1/models``. Each request is answered by a *script*: a callable receiving the parsed request
(:class:`Request`) and returning a :class:`Reply` that says what to send and how: after a delay, as a 429 with
``Retry-After``, a 500, garbage bytes, or never (a hang, released when the server stops). The server records
every request and the maximum number of requests in flight.

Use it in-process::

    with JudgeServer(lambda req: Reply(content="<score>7</score>")) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="x")

or as a separate process (benchmarks; :class:`AsyncJudgeServer`, timer-precise under load), printing
``PORT <n>`` when ready::

    python tests/judge_server.py --latency 0.2 --jitter 0.2 --content "<score>7</score>"
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional


@dataclass
class Request:
    """One received chat-completions request."""

    body: dict[str, Any]
    headers: dict[str, str]
    index: int                        # 0-based arrival order

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def text(self) -> str:
        """All message contents joined: handy for routing a reply on what the judge was asked."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)


@dataclass
class Reply:
    """How to answer one request.

    ``content`` becomes ``choices[0].message.content`` of a 200 response. ``status`` other than 200 sends an
    OpenAI-style error body. ``raw`` sends these bytes verbatim (garbage). ``hang`` never answers (until the
    server stops). ``error`` is the message of an error body. ``delay_s`` waits before answering. ``headers`` are added (e.g. ``{"Retry-After": "1"}``).
    """

    content: Optional[str] = "<score>1</score>"
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: Optional[bytes] = None
    hang: bool = False
    reasoning_content: Optional[str] = None
    error: Optional[str] = None
    raw_content_type: str = "text/plain"     # the Content-Type sent with ``raw`` (application/json: broken JSON)


Script = Callable[[Request], Reply]


def fixed(content: str, delay_s: float = 0.0, jitter: float = 0.0, seed: int = 0) -> Script:
    """A script that always answers ``content`` after ``delay_s`` +/- ``jitter`` (a fraction of it)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def script(req: Request) -> Reply:
        with lock:
            factor = 1.0 + rng.uniform(-jitter, jitter)
        return Reply(content=content, delay_s=delay_s * factor)

    return script


def _completion_body(req: Request, reply: Reply) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in req.messages)
    completion_tokens = len((reply.content or "").split())
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning_content is not None:
        message["reasoning_content"] = reply.reasoning_content
    return {
        "id": f"chatcmpl-{req.index}", "object": "chat.completion", "created": int(time.time()),
        "model": req.body.get("model", "judge"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True     # headers and body go in separate writes: avoid 40 ms delayed-ACK stalls
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence per-request logging
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "judge", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        owner = self.server.owner
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, b'{"error": {"message": "request body is not JSON"}}')
            return
        req = owner._begin(body, {k.lower(): v for k, v in self.headers.items()})
        try:
            reply = owner.script(req)
            if reply.hang:
                owner._stopping.wait(owner.hang_limit_s)
                self.close_connection = True
                return
            if reply.delay_s > 0:
                owner._stopping.wait(reply.delay_s)
            if reply.raw is not None:
                self._send(reply.status, reply.raw, reply.headers, content_type=reply.raw_content_type)
            elif reply.status != 200:
                err = {"error": {"message": reply.error or f"scripted error {reply.status}",
                                 "type": "server_error", "code": reply.status}}
                self._send(reply.status, json.dumps(err).encode(), reply.headers)
            else:
                self._send(200, json.dumps(_completion_body(req, reply)).encode(), reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            owner._end()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: "JudgeServer"


class JudgeServer:
    """The server on 127.0.0.1 (a free port), run in a background thread. A context manager."""

    def __init__(self, script: Script | None = None, hang_limit_s: float = 60.0):
        self.script: Script = script or fixed("<score>1</score>")
        self.hang_limit_s = hang_limit_s
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> "JudgeServer":
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="judge-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "JudgeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- facts -----------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    def count(self, needle: str) -> int:
        """How many requests so far contained ``needle`` in their messages."""
        with self._lock:
            return sum(needle in r.text for r in self.requests)

    # -- bookkeeping (handler threads) -----------------------------------------------------------------------
    def _begin(self, body: dict[str, Any], headers: dict[str, str]) -> Request:
        with self._lock:
            req = Request(body=body, headers=headers, index=len(self.requests))
            self.requests.append(req)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return req

    def _end(self) -> None:
        with self._lock:
            self.in_flight -= 1


class AsyncJudgeServer:
    """The same protocol on one asyncio loop in a thread: no thread per connection, so under heavy load its
    delays are timer-precise (the threaded server's 64 handler threads contend for the GIL and answer ~20 ms
    late). Benchmarks use it; it supports scripts that only delay and answer (no hang/raw)."""

    def __init__(self, script: Script):
        self.script = script
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop: Any = None
        self._thread = threading.Thread(target=self._run, name="async-judge-server", daemon=True)

    def start(self) -> "AsyncJudgeServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def _run(self) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=512))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _connection(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = json.loads(await reader.readexactly(int(headers.get("content-length") or 0)) or b"{}")
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                req = Request(body=body, headers=headers, index=self.requests - 1)
                reply = self.script(req)
                if reply.delay_s > 0:
                    await asyncio.sleep(reply.delay_s)
                data = json.dumps(_completion_body(req, reply)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\n\r\n" + data)
                self.in_flight -= 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def reset_counters(self) -> None:
        self.requests = 0
        self.max_in_flight = self.in_flight


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the scriptable judge server until stdin closes.")
    p.add_argument("--latency", type=float, default=0.2, help="seconds per answer (default %(default)s)")
    p.add_argument("--jitter", type=float, default=0.2, help="+/- fraction of the latency (default %(default)s)")
    p.add_argument("--content", default="<score>7</score>", help="the judge's answer text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threaded", action="store_true", help="the thread-per-connection server (default: asyncio)")
    args = p.parse_args(argv)
    script = fixed(args.content, args.latency, args.jitter, args.seed)
    server: Any = JudgeServer(script) if args.threaded else AsyncJudgeServer(script)
    server.start()
    print(f"PORT {server.port}", flush=True)
    try:
        for line in sys.stdin:            # a line "stats" prints counters; EOF stops the server
            if line.strip() == "stats":
                count = len(server.requests) if args.threaded else server.requests
                print(json.dumps({"requests": count, "max_in_flight": server.max_in_flight}), flush=True)
            elif line.strip() == "reset":
                server.reset_counters()
                print("OK", flush=True)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
