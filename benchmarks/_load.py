"""A closed-loop HTTP/1.1 load generator for the serving benchmark (asyncio, keep-alive).

Each of ``concurrency`` connections sends one pre-encoded request, reads the whole response,
and sends the next at once, for ``warmup + duration`` seconds; only responses completed inside
the measuring window count. The client is a few dozen lines on raw asyncio streams (uvloop when
installed) rather than httpx: on a 2-core machine it shares the CPU with the server under test,
and httpx's ~0.5 ms of client work per request would blur the servers' own latencies.
``--client httpx`` in ``benchmarks/serving.py`` measures with httpx instead, for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadResult", "Request", "percentile", "run_load", "run_load_httpx", "run_load_wrk", "time_requests"]


@dataclass
class Request:
    """One HTTP request, encoded once: method, path, headers and body."""

    path: str
    body: bytes
    content_type: str = "application/json"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, host: str, port: int) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}:{port}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class LoadResult:
    """What one load run measured (``percentiles``: p50/p99 in seconds from a client that keeps
    no list of latencies, wrk)."""

    concurrency: int
    seconds: float
    ok: int
    errors: int
    latencies: list[float]
    error_sample: str = ""
    percentiles: dict[int, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return self.percentiles.get(50, percentile(self.latencies, 50)) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentiles.get(99, percentile(self.latencies, 99)) * 1000


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), close
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _connection(host: str, port: int, raw: bytes, start: float, stop: float, end: float,
                      latencies: list[float], counts: list[int], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            writer.write(raw)
            status, body, close = await _read_response(reader)
            done = time.perf_counter()
            if start <= done < stop:
                if status == 200:
                    latencies.append(done - sent)
                    counts[0] += 1
                else:
                    counts[1] += 1
                    if not errors:
                        errors.append(f"{status}: {body[:300]!r}")
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _load(host: str, port: int, request: Request, concurrency: int, duration: float,
                warmup: float) -> LoadResult:
    raw = request.encode(host, port)
    latencies: list[float] = []
    counts = [0, 0]
    errors: list[str] = []
    t0 = time.perf_counter()
    start, stop = t0 + warmup, t0 + warmup + duration
    await asyncio.gather(*(_connection(host, port, raw, start, stop, stop, latencies, counts, errors)
                           for _ in range(concurrency)))
    return LoadResult(concurrency, duration, counts[0], counts[1], latencies, errors[0] if errors else "")


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def run_load(host: str, port: int, request: Request, concurrency: int, duration: float = 10.0,
             warmup: float = 2.0) -> LoadResult:
    """Closed-loop load over ``concurrency`` keep-alive connections; bounded by the clock."""
    return _run(_load(host, port, request, concurrency, duration, warmup))  # type: ignore[no-any-return]


def run_load_httpx(host: str, port: int, request: Request, concurrency: int, duration: float = 10.0,
                   warmup: float = 2.0) -> LoadResult:
    """The same closed loop with an ``httpx.AsyncClient`` (one keep-alive pool)."""
    import httpx

    async def main() -> LoadResult:
        latencies: list[float] = []
        counts = [0, 0]
        errors: list[str] = []
        url = f"http://{host}:{port}{request.path}"
        headers = {"content-type": request.content_type, **request.headers}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        t0 = time.perf_counter()
        start, stop = t0 + warmup, t0 + warmup + duration
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            async def worker() -> None:
                while time.perf_counter() < stop:
                    sent = time.perf_counter()
                    response = await client.request(request.method, url, content=request.body, headers=headers)
                    done = time.perf_counter()
                    if start <= done < stop:
                        if response.status_code == 200:
                            latencies.append(done - sent)
                            counts[0] += 1
                        else:
                            counts[1] += 1
                            if not errors:
                                errors.append(f"{response.status_code}: {response.content[:300]!r}")
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return LoadResult(concurrency, duration, counts[0], counts[1], latencies, errors[0] if errors else "")

    return asyncio.run(main())


WRK = "/usr/bin/wrk"

_WRK_SCRIPT = """
wrk.method = %(method)s
wrk.path = %(path)s
wrk.body = %(body)s
%(headers)s
done = function(summary, latency, requests)
  io.write(string.format('WRK %%d %%d %%d %%d %%d %%d\\n', summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua(data: str | bytes) -> str:
    """``data`` as a Lua string literal, every byte a decimal escape (so any byte is safe)."""
    raw = data.encode() if isinstance(data, str) else data
    return '"' + "".join(f"\\{b}" for b in raw) + '"'


def run_load_wrk(host: str, port: int, request: Request, concurrency: int, duration: float = 10.0,
                 warmup: float = 2.0) -> LoadResult:
    """The closed loop with wrk (one thread; C, so the client's own CPU is small): a warm-up run, then
    the measured one; latencies are wrk's p50/p99, errors its non-2xx answers and socket errors."""
    import os
    import subprocess
    import tempfile

    headers = {"Content-Type": request.content_type, **request.headers}
    script = _WRK_SCRIPT % {"method": _lua(request.method), "path": _lua(request.path), "body": _lua(request.body),
                            "headers": "\n".join(f"wrk.headers[{_lua(k)}] = {_lua(v)}" for k, v in headers.items())}
    fd, path = tempfile.mkstemp(suffix=".lua")
    with os.fdopen(fd, "w") as out:
        out.write(script)

    def wrk(seconds: float) -> list[int]:
        argv = [WRK, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "-s", path,
                f"http://{host}:{port}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
        return [int(x) for x in line.split()[1:]]

    try:
        if warmup > 0:
            wrk(warmup)
        requests, micros, status, socket_errors, p50, p99 = wrk(duration)
    finally:
        os.unlink(path)
    seconds = micros / 1e6
    errors = status + socket_errors
    sample = f"{status} non-2xx answers, {socket_errors} socket errors" if errors else ""
    return LoadResult(concurrency, seconds, requests - status, errors, [], sample, {50: p50 / 1e6, 99: p99 / 1e6})


def time_requests(host: str, port: int, request: Request, repeat: int = 7, warmup: int = 2) -> list[float]:
    """Latency (s) of ``repeat`` requests sent one after another on one keep-alive connection."""
    async def main() -> list[float]:
        raw = request.encode(host, port)
        reader, writer = await asyncio.open_connection(host, port)
        out = []
        try:
            for i in range(warmup + repeat):
                sent = time.perf_counter()
                writer.write(raw)
                status, body, _ = await _read_response(reader)
                took = time.perf_counter() - sent
                if status != 200:
                    raise RuntimeError(f"{request.path} answered {status}: {body[:300]!r}")
                if i >= warmup:
                    out.append(took)
        finally:
            writer.close()
        return out

    return _run(main())  # type: ignore[no-any-return]


def median(values: list[float]) -> float:
    """Median, NaN when empty."""
    return statistics.median(values) if values else float("nan")
