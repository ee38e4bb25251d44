"""A fault-injecting HTTP proxy on loopback, for putting in front of Azurite.

Every client connection carries exactly one request: the proxy rewrites ``Connection`` to
``close`` on the request and on the response, so it only parses a request head (request
line, headers, then a Content-Length or chunked body) and then relays the upstream's
answer until the upstream closes. For each request, with probability ``rate`` (drawn from
a seeded random generator, in arrival order), it injects one fault instead of a clean relay,
the kinds taking turns in a seeded order (so each kind is seen once there are five faults):

- ``status_503``: answers 503 ServerBusy (with ``Retry-After`` 0 or 1) without forwarding;
- ``status_500``: answers 500 InternalError without forwarding;
- ``drop``:       closes the connection without answering and without forwarding;
- ``delay``:      waits 0.2-1 s, then forwards normally;
- ``truncate``:   forwards, then cuts the response off midway (half of the body, or half
                  of the status line when there is no body) and closes. The upstream did the work
                  (a write happened): the client sees a broken response to a request
                  that succeeded, the hardest case for a retry.

Optionally, an outage: the first N requests for targets containing a given text are all
answered 503, outlasting any client's own retries (``FaultPlan.outage_*``).

Counts per kind (and of clean relays, ``passed``) are kept (``snapshot()``), and every
fault is listed in ``faults``, so a test can prove the faults really happened.

Run it by hand::

    python -m tests.fault_proxy --listen 0 --target 127.0.0.1:10000 --rate 0.3 --seed 1

prints ``http://127.0.0.1:PORT`` and serves until interrupted, then prints the counts.
Use it from a test with ``FaultProxy(...).running()`` (a background thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

FAULT_KINDS: tuple[str, ...] = ("status_503", "status_500", "drop", "delay", "truncate")
HEAD_LIMIT = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "expect"}


@dataclass
class FaultPlan:
    """What to inject.

    Each request is faulted with probability ``rate`` (a seeded random draw, in arrival
    order); the faulted requests take the ``kinds`` in turn, in an order shuffled by the
    seed, so every kind is injected as soon as there are as many faults as kinds. Only
    requests whose line ("GET /account/container/blob?query") contains ``match`` can be
    faulted.

    An outage is separate from the rate: the first ``outage_requests`` requests whose line
    contains ``outage_match`` are all answered 503, however often they are retried (one
    object unavailable for longer than a client's own retries last).
    """

    rate: float = 0.1
    seed: int = 0
    kinds: Sequence[str] = FAULT_KINDS
    delay_range: tuple[float, float] = (0.2, 1.0)
    match: str = ""
    # False: an error response (4xx/5xx) is cut in its status line, never in its body.
    # object_store (obstore, Icechunk) does not retry an error whose body was cut off
    # (docs/faults.md), so this shows what depends on the layers above it.
    cut_error_bodies: bool = True
    outage_match: str = ""
    outage_requests: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"The fault rate must be between 0 and 1, not {self.rate!r}.")
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"Unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}.")
        if not self.kinds:
            raise ValueError("At least one fault kind is needed.")
        if self.outage_requests and not self.outage_match:
            raise ValueError("An outage needs outage_match (text in its request lines).")


@dataclass
class RequestHead:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}"]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() not in HOP_BY_HOP]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    """An asyncio HTTP/1.1 proxy to ``target`` ("host:port") that injects faults."""

    def __init__(self, target: str, plan: FaultPlan | None = None, *, listen_port: int = 0) -> None:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"The target must be host:port, not {target!r}.")
        self.target_host, self.target_port = host, int(port)
        self.plan = plan or FaultPlan()
        self.listen_port = listen_port
        self.counts: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()  # faults per (kind, method), e.g. "drop PUT"
        self.faults: list[tuple[str, str, str]] = []  # (kind, method, request target)
        self._random = random.Random(self.plan.seed)
        self._turns = list(self.plan.kinds)
        self._random.shuffle(self._turns)
        self._turn = 0
        self._outage_left = self.plan.outage_requests
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # -- addresses and counts ----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The proxy is not running.")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> dict[str, int]:
        """Counts so far: one entry per fault kind, ``outage``, ``passed``, ``faults`` (all
        injected, outage included), ``failed`` (faults the client saw fail: all but delays)
        and ``requests``."""
        with self._lock:
            counts = {k: self.counts.get(k, 0) for k in (*FAULT_KINDS, "outage", "passed")}
        counts["faults"] = sum(counts[k] for k in (*FAULT_KINDS, "outage"))
        counts["failed"] = counts["faults"] - counts["delay"]
        counts["requests"] = counts["faults"] + counts["passed"]
        return counts

    def reset(self) -> None:
        """Forget the counts (the random sequence and the outage carry on)."""
        with self._lock:
            self.counts.clear()
            self.by_method.clear()
            self.faults.clear()

    def set_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"The fault rate must be between 0 and 1, not {rate!r}.")
        self.plan.rate = rate

    def _choose(self, head: RequestHead) -> tuple[str | None, float]:
        """The fault for this request (None: relay it cleanly) and a uniform number in
        [0, 1) that sizes it (the delay, the Retry-After)."""
        with self._lock:
            draw, extra = self._random.random(), self._random.random()
            kind: str | None = None
            line = f"{head.method} {head.target}"
            if self._outage_left and self.plan.outage_match in line:
                self._outage_left -= 1
                kind = "outage"
            elif draw < self.plan.rate and self.plan.match in line:
                kind = self._turns[self._turn % len(self._turns)]
                self._turn += 1
            if kind is None:
                self.counts["passed"] += 1
                return None, extra
            self.counts[kind] += 1
            self.by_method[f"{kind} {head.method}"] += 1
            conditional = head.header("if-none-match") or head.header("if-match")
            note = f" [conditional: {conditional}]" if conditional else ""
            self.faults.append((kind, head.method, head.target + note))
            return kind, extra

    # -- serving -----------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.listen_port, limit=HEAD_LIMIT
        )

    async def stop(self) -> None:
        """Stop listening and end the connections still open (idle or mid-relay)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultProxy]:
        """Serve from a background thread (with its own event loop) inside the block."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the proxy is stopping
            writer.transport.abort()
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        if head is None:
            return  # a connection opened and closed without a request
        if (head.header("expect") or "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await _read_body(reader, head)
        kind, extra = self._choose(head)
        if kind in ("status_503", "status_500", "outage"):
            writer.write(_error_response(kind, head.method, retry_after=int(extra * 2)))
            await writer.drain()
            return
        if kind == "drop":
            return
        if kind == "delay":
            low, high = self.plan.delay_range
            await asyncio.sleep(low + (high - low) * extra)
        await self._forward(head, body, writer, truncate=kind == "truncate")

    async def _forward(
        self, head: RequestHead, body: bytes, writer: asyncio.StreamWriter, *, truncate: bool
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            self.target_host, self.target_port, limit=HEAD_LIMIT
        )
        try:
            up_writer.write(head.encode() + body)
            await up_writer.drain()
            status_line, headers = await _read_response_head(up_reader)
            response_head = _rewrite_response_head(status_line, headers)
            if not truncate:
                writer.write(response_head)
                while chunk := await up_reader.read(64 * 1024):
                    writer.write(chunk)
                    await writer.drain()
                await writer.drain()
                return
            body = await up_reader.read()
            cut_body = self.plan.cut_error_bodies or _status(status_line) < 400
            writer.write(_cut(head.method, status_line, headers, response_head, body, cut_body))
            await writer.drain()
        finally:
            up_writer.close()


# -- HTTP parsing -------------------------------------------------------------------------
async def _read_head(reader: asyncio.StreamReader) -> RequestHead | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    lines = raw.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers.append((key.strip(), value.strip()))
    return RequestHead(method, target, version, headers)


async def _read_body(reader: asyncio.StreamReader, head: RequestHead) -> bytes:
    """The request body exactly as sent (chunked bodies are relayed still chunked)."""
    if "chunked" in (head.header("transfer-encoding") or "").lower():
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    length = int(head.header("content-length") or 0)
    return await reader.readexactly(length) if length else b""


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    while raw.split(b" ", 2)[1:2] == [b"100"]:  # an interim 100 Continue: skip it
        raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers.append((key.strip(), value.strip()))
    return lines[0], headers


def _rewrite_response_head(status_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [status_line]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _cut(
    method: str,
    status_line: str,
    headers: list[tuple[str, str]],
    response_head: bytes,
    body: bytes,
    cut_body: bool = True,
) -> bytes:
    """The first part of a response, such that no client can take it for a whole one: half
    of a body of known length or a chunked body (which then lacks its last chunk), else (or
    when ``cut_body`` is false) half of the status line."""
    chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)
    length = _content_length(headers)
    if cut_body and method != "HEAD" and len(body) > 1 and (chunked or length):
        return response_head + body[: len(body) // 2]
    return status_line.encode("latin-1")[: len(status_line) // 2]


def _status(status_line: str) -> int:
    parts = status_line.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for key, value in headers:
        if key.lower() == "content-length" and value.isdigit():
            return int(value)
    return None


def _error_response(kind: str, method: str, *, retry_after: int) -> bytes:
    """An answer shaped like Azure Storage's own 503 ServerBusy / 500 InternalError."""
    if kind != "status_500":
        status, code = "503 Service Unavailable", "ServerBusy"
        message = "The server is currently unable to receive requests. Please retry your request."
    else:
        status, code = "500 Internal Server Error", "InternalError"
        message = "The server encountered an internal error. Please retry the request."
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message} (injected by the fault proxy)</Message></Error>"
    ).encode()
    head = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"x-ms-error-code: {code}",
        "Connection: close",
    ]
    if kind != "status_500":
        head.append(f"Retry-After: {retry_after}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode()
    return data if method == "HEAD" else data + body


# -- command line -------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fault_proxy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--target", required=True, help="host:port of the real service")
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests to fault")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds to take"
    )
    parser.add_argument("--match", default="", help="fault only request lines containing this")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    plan = FaultPlan(rate=args.rate, seed=args.seed, kinds=kinds, match=args.match)
    proxy = FaultProxy(args.target, plan, listen_port=args.listen)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await proxy.start()
        print(proxy.address, flush=True)
        await stop.wait()
        await proxy.stop()

    asyncio.run(serve())
    print(json.dumps(proxy.snapshot()), flush=True)


if __name__ == "__main__":
    main()
