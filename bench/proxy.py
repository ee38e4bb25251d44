"""A counting HTTP proxy on loopback, for putting in front of Azurite: every request and every
response body byte that crosses it, by method (the approach of tests/fault_proxy.py: one
request per connection, ``Connection: close`` both ways, so only request heads are parsed)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection"}


class CountingProxy:
    def __init__(self, target_host: str, target_port: int, *, log_targets: bool = False) -> None:
        self.target = (target_host, target_port)
        # with log_targets, every request's method and target (path and query), in order
        self.targets: list[tuple[str, str]] | None = [] if log_targets else None
        self.requests: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Requests read but not yet counted: a client has its whole response (Content-Length)
        # before the handler sees the upstream's end and counts it, so snapshot() waits.
        self._in_flight = 0
        self._counted = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> CountingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20), self._loop
        )
        self._server = future.result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.body_bytes.clear()

    def snapshot(self) -> dict[str, int]:
        """Reads (GET, HEAD): requests and response body bytes; all requests of any method.
        Waits (up to 10 s) for the requests already answered to be counted."""
        with self._lock:
            self._counted.wait_for(lambda: self._in_flight == 0, timeout=10)
            return {
                "requests": sum(self.requests.values()),
                "read_requests": self.requests["GET"] + self.requests["HEAD"],
                "bytes": self.body_bytes["GET"] + self.body_bytes["HEAD"],
            }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        started = False
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            with self._lock:
                self._in_flight += 1
                started = True
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            if self.targets is not None:
                with self._lock:
                    self.targets.append((method, lines[0].split(" ")[1]))
            headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
            length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
            body = await reader.readexactly(length) if length else b""
            kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() not in HOP_BY_HOP]
            out = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            upstream_writer.write(out + body)
            await upstream_writer.drain()
            total, header_end, buffer = 0, -1, b""
            while chunk := await upstream_reader.read(1 << 16):
                if header_end < 0:
                    buffer += chunk
                    found = buffer.find(b"\r\n\r\n")
                    if found >= 0:
                        header_end = found + 4
                total += len(chunk)
                writer.write(chunk)
                await writer.drain()
            with self._lock:
                self.requests[method] += 1
                self.body_bytes[method] += max(0, total - max(header_end, 0))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if started:
                with self._lock:
                    self._in_flight -= 1
                    self._counted.notify_all()
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()
