"""A fault-injecting HTTP proxy on loopback, in front of a real registry.

:class:`FaultProxy` listens on ``127.0.0.1:<free port>`` and forwards every request to the
upstream registry (plain HTTP), except where a :class:`Rule` says otherwise. Rules match on
method, a regex searched in the path (with its query) and how many matching requests went by
(``skip``, ``times``, ``probability``), and apply one :class:`Fault`:

* an answer of its own, not forwarded: ``Fault.respond(429, headers={"Retry-After": "1"})``,
  ``Fault.html(502)``, ``Fault.body(...)``, ``Fault.generated(size)`` (a large body made on
  the fly, optionally without ``Content-Length``), ``Fault.redirect(307)``,
  ``Fault.drop()`` (close without answering);
* a damaged upstream answer: ``Fault.reset(after=K)`` (RST after K body bytes),
  ``Fault.truncate(after=K)`` (clean close after K bytes of a correct ``Content-Length``),
  ``Fault.stall(seconds, after=K)``, ``Fault.slow(rate)``, ``Fault.corrupt()`` (same length,
  wrong bytes, status 200);
* ``Fault.delay(seconds)``: wait, then forward (a slow registry);
* ``Fault.call(fn)``: run ``fn(request)`` (e.g. delete a blob) and forward;
* ``Fault.reset_body(after=K)``: a reset in the middle of a PATCH/PUT body: the registry
  receives the first K body bytes (as a PATCH of the session), the client a reset. From
  then on the proxy maps the session's URL to the registry's current one (the registry
  behaves as one with stable session URLs, as the spec intends; distribution's ``_state``
  would otherwise refuse the old URL);
* ``Fault.lost()``: forward (the registry acts on the request), then reset: a lost reply.

Proxy-wide switches: ``range_support=False`` strips ``Range`` from requests (the registry
then answers 200 with the whole blob), ``max_body=N`` answers 413 to requests with a larger
body, ``chunk_min_length=N`` adds ``OCI-Chunk-Min-Length`` to upload-session answers,
``first_per_url=429`` (or 503) answers the first request to each method and URL with that
status (429 with ``Retry-After: 1``), ``rate_limit=N`` is a token bucket of N requests per
second (burst N; 429 with ``Retry-After: 1`` beyond), ``patch_status=204`` turns successful
PATCH answers into that status (go-containerregistry's registry before v0.21.6).
:attr:`FaultProxy.throttled` counts the 429/503 answers of these modes.

Everything is counted: :attr:`FaultProxy.log` holds one :class:`Record` per request (method,
path, status, fault applied, body bytes sent), :meth:`FaultProxy.count` filters it,
:attr:`FaultProxy.faults` counts faults by kind, :attr:`FaultProxy.max_inflight` is the most
requests handled at once. Loopback only, bounded (connections, body sizes, stall lengths),
and :meth:`FaultProxy.stop` ends every connection and stall.
"""

from __future__ import annotations

import collections
import http.client
import random
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Request and response bodies are held in memory up to this size.
MAX_BODY = 256 * 1024 * 1024
#: At most this many client connections are served at once; more are refused.
MAX_CONNECTIONS = 128
#: No stall lasts longer than this, whatever a test asks.
MAX_STALL = 120.0
#: Records kept in :attr:`FaultProxy.log`.
MAX_LOG = 100_000

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Request:
    """A request as the proxy received it."""

    method: str
    path: str  #: path and query, as sent
    headers: Mapping[str, str]  #: lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Fault:
    """What to do with a matching request. Build with the class methods."""

    kind: str
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes = b""
    after: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    size: int = 0
    no_length: bool = False
    forward: bool = False
    other_path: bool = False
    fn: Callable[[Request], None] | None = None

    # -- answers of the proxy's own --------------------------------------------------------

    @classmethod
    def respond(
        cls,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        content_type: str | None = None,
        forward: bool = False,
    ) -> Fault:
        """Answer ``code`` with ``content``. ``forward=True`` sends the request upstream first
        (the registry acts on it) and replaces the answer (a lost reply)."""
        h = dict(headers or {})
        if content_type:
            h["Content-Type"] = content_type
        return cls(
            "status", status=code, headers=tuple(h.items()), content=content, forward=forward
        )

    @classmethod
    def too_many(cls, retry_after: str | None = "1") -> Fault:
        """429 with ``Retry-After`` (seconds or an HTTP-date), the registry's JSON error."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited"}]}'
        return cls.respond(429, headers=headers, content=body, content_type="application/json")

    @classmethod
    def html(cls, code: int = 200) -> Fault:
        page = (
            b"<!DOCTYPE html>\n<html><head><title>Gateway</title></head>"
            b"<body><h1>Please log in</h1><p>corporate proxy</p></body></html>\n"
        )
        return cls.respond(code, content=page, content_type="text/html; charset=utf-8")

    @classmethod
    def body(cls, content: bytes, *, code: int = 200, content_type: str = OCI_MANIFEST) -> Fault:
        return cls.respond(code, content=content, content_type=content_type)

    @classmethod
    def generated(
        cls,
        size: int,
        *,
        code: int = 200,
        content_type: str = OCI_MANIFEST,
        no_length: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """A body of ``size`` bytes made on the fly (``{"x":"aaaa…``), with ``Content-Length``
        unless ``no_length`` (then the body ends when the connection closes). The bytes
        actually sent are in the request's :class:`Record`."""
        h = dict(headers or {})
        h["Content-Type"] = content_type
        return cls(
            "generated", status=code, size=size, no_length=no_length, headers=tuple(h.items())
        )

    @classmethod
    def redirect(cls, code: int = 307, *, other_path: bool = False) -> Fault:
        """Redirect to the same URL, or (``other_path``) to ``/_redirected/<path>``, which
        the proxy maps back to the original."""
        return cls("redirect", status=code, other_path=other_path)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without an answer."""
        return cls("drop")

    # -- damaged upstream answers ----------------------------------------------------------

    @classmethod
    def reset(cls, after: int) -> Fault:
        """Forward; send the headers and ``after`` body bytes, then reset the connection."""
        return cls("reset", after=after)

    @classmethod
    def truncate(cls, after: int) -> Fault:
        """Forward; send the correct headers but only ``after`` body bytes, then close."""
        return cls("truncate", after=after)

    @classmethod
    def stall(cls, seconds: float, *, after: int = 0) -> Fault:
        """Forward; send the headers and ``after`` body bytes, then go silent for
        ``seconds`` (or until the proxy stops), then close."""
        return cls("stall", after=after, seconds=min(seconds, MAX_STALL))

    @classmethod
    def slow(cls, rate: float) -> Fault:
        """Forward; send the body at ``rate`` bytes per second."""
        return cls("slow", rate=rate)

    @classmethod
    def corrupt(cls) -> Fault:
        """Forward; flip bytes of the body (same length, status unchanged)."""
        return cls("corrupt")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` (or until the proxy stops) before forwarding: a slow registry."""
        return cls("delay", seconds=min(seconds, MAX_STALL))

    @classmethod
    def reset_body(cls, after: int) -> Fault:
        """The registry gets the first ``after`` body bytes of this PATCH or PUT (sent on as a
        PATCH of the same session), then the client's connection is reset."""
        return cls("reset_body", after=after)

    @classmethod
    def lost(cls) -> Fault:
        """Forward, then reset the connection instead of answering."""
        return cls("lost")

    @classmethod
    def call(cls, fn: Callable[[Request], None]) -> Fault:
        """Run ``fn(request)`` in the proxy, then forward."""
        return cls("call", fn=fn)


@dataclass
class Rule:
    """Apply ``fault`` to requests with ``method`` (None: any) whose path and query match
    ``path`` (a regex, searched), after letting ``skip`` of them through, at most ``times``
    times (None: always), each with ``probability``."""

    fault: Fault
    method: str | None = None
    path: str = ""
    skip: int = 0
    times: int | None = 1
    probability: float = 1.0
    matched: int = 0  #: matching requests seen
    applied: int = 0  #: faults applied
    _re: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._re = re.compile(self.path)

    def matches(self, req: Request) -> bool:
        return (self.method is None or self.method == req.method) and bool(
            self._re.search(req.path)
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times


@dataclass
class Record:
    """One request the proxy handled."""

    method: str
    path: str
    range: str | None
    headers: Mapping[str, str] = field(default_factory=dict)  #: request headers, lower-case
    size: int = 0  #: request body bytes
    status: int | None = None  #: status sent to the client (None: no answer)
    fault: str | None = None  #: kind of fault applied
    sent: int = 0  #: body bytes sent to the client
    content_range: str | None = None


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    proxy: FaultProxy


class _Abort(Exception):
    """End the connection now (a fault did, or the proxy stops)."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        p = self.server.proxy
        sock: socket.socket = self.request
        if not p._enter(sock):
            sock.close()
            return
        rfile = sock.makefile("rb")
        try:
            while not p._stopped.is_set():
                req = _read_request(rfile)
                if req is None:
                    return
                keep = p._handle(sock, req)
                if not keep:
                    return
        except (_Abort, OSError, ValueError, http.client.HTTPException):
            return
        finally:
            rfile.close()
            p._leave(sock)


def _read_line(rfile: Any) -> bytes:
    line = rfile.readline(65537)
    if len(line) > 65536:
        raise ValueError("header line too long")
    return bytes(line)


def _read_request(rfile: Any) -> Request | None:
    line = _read_line(rfile)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError(f"bad request line {line!r}")
    method, path, _ = parts
    headers: dict[str, str] = {}
    for _ in range(200):
        h = _read_line(rfile)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        total = 0
        while True:
            size = int(_read_line(rfile).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while _read_line(rfile) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise ValueError("request body too large")
            chunks.append(rfile.read(size))
            rfile.readline()
        body = b"".join(chunks)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if n > MAX_BODY:
            raise ValueError("request body too large")
        body = rfile.read(n)
        if len(body) != n:
            raise ValueError("short request body")
    return Request(method, path, headers, body)


class FaultProxy:
    """The proxy; a context manager (start on enter, stop on exit)."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int | None = None,
        range_support: bool = True,
        max_body: int | None = None,
        chunk_min_length: int | None = None,
        first_per_url: int | None = None,
        rate_limit: float | None = None,
        patch_status: int | None = None,
    ) -> None:
        host, _, port = upstream.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream}")
        self.upstream = (host, int(port))
        self.range_support = range_support
        self.max_body = max_body
        self.chunk_min_length = chunk_min_length
        self.first_per_url = first_per_url
        self.rate_limit = rate_limit
        self.patch_status = patch_status
        self.throttled = 0
        self._seen_urls: set[tuple[str, str]] = set()
        self._aliases: dict[str, str] = {}
        self._tokens = float(rate_limit or 0)
        self._refilled = time.monotonic()
        self.rules: list[Rule] = []
        self.log: collections.deque[Record] = collections.deque(maxlen=MAX_LOG)
        self.faults: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.inflight = 0
        self.max_inflight = 0
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def repo_url(self, name: str) -> str:
        """The Spack mirror URL of repository ``name`` through the proxy."""
        return f"oci+http://{self.host}/{name}"

    # -- scripting and counting ------------------------------------------------------------

    def add(
        self,
        fault: Fault,
        method: str | None = None,
        path: str = "",
        *,
        skip: int = 0,
        times: int | None = 1,
        probability: float = 1.0,
    ) -> Rule:
        """Add a rule (rules are tried in the order they were added; the first that
        matches, has not run out and wins its probability draw applies)."""
        rule = Rule(fault, method, path, skip=skip, times=times, probability=probability)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, method: str | None = None, path: str = "", *, fault: str | None = None) -> int:
        """Requests seen with ``method`` whose path matches ``path`` (and, if given, that got
        fault ``fault``)."""
        rx = re.compile(path)
        with self._lock:
            records = list(self.log)
        return sum(
            1
            for r in records
            if (method is None or r.method == method)
            and rx.search(r.path)
            and (fault is None or r.fault == fault)
        )

    def records(self, method: str | None = None, path: str = "") -> list[Record]:
        rx = re.compile(path)
        with self._lock:
            return [
                r for r in self.log if (method is None or r.method == method) and rx.search(r.path)
            ]

    # -- internals -------------------------------------------------------------------------

    def _enter(self, sock: socket.socket) -> bool:
        with self._lock:
            if len(self._conns) >= MAX_CONNECTIONS or self._stopped.is_set():
                return False
            self._conns.add(sock)
            return True

    def _leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _pick(self, req: Request) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.exhausted or not rule.matches(req):
                    continue
                rule.matched += 1
                if rule.matched <= rule.skip:
                    continue
                if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                    continue
                rule.applied += 1
                self.faults[rule.fault.kind] += 1
                return rule.fault
        return None

    def _handle(self, sock: socket.socket, req: Request) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        rec = Record(req.method, req.path, req.header("range"), dict(req.headers), len(req.body))
        with self._lock:
            self.requests += 1
            self.log.append(rec)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            keep = req.header("connection") != "close"
            if req.path.startswith("/_redirected/"):
                req = Request(req.method, req.path[len("/_redirected") :], req.headers, req.body)
            if self.max_body is not None and len(req.body) > self.max_body:
                with self._lock:
                    self.faults["too_large"] += 1
                rec.fault = "too_large"
                body = b'{"errors":[{"code":"SIZE_INVALID","message":"request too large"}]}'
                self._send(sock, rec, 413, [("Content-Type", "application/json")], body)
                return keep
            req = self._aliased(req)
            limited = self._limiter(req)
            if limited is not None:
                rec.fault = "throttled"
                self._send(sock, rec, *limited)
                return keep
            fault = self._pick(req)
            rec.fault = fault.kind if fault else None
            if fault is not None and fault.kind in ("reset_body", "lost"):
                self._cut(req, fault)
                _reset(sock)
                raise _Abort
            if fault is not None and not (fault.kind == "status" and fault.forward):
                own = self._own_answer(sock, rec, req, fault)
                if own is not None:
                    return keep and own
            if fault is not None and fault.kind == "call" and fault.fn is not None:
                fault.fn(req)
            if fault is not None and fault.kind == "delay":
                if self._stopped.wait(fault.seconds):
                    raise _Abort
            status, headers, body = self._forward(req)
            self._follow(req, headers)
            if fault is not None and fault.kind == "status":  # forwarded, reply replaced
                self._send(sock, rec, fault.status, list(fault.headers), fault.content)
                return keep
            headers = self._fix_headers(req, status, headers)
            if self.patch_status and req.method == "PATCH" and 200 <= status < 300:
                status = self.patch_status
            head_only = req.method == "HEAD" or status in (204, 304)
            if fault is None or fault.kind in ("call", "delay"):
                self._send(sock, rec, status, headers, body, head_only=head_only)
                return keep
            self._damaged(sock, rec, fault, status, headers, body)
            return False
        finally:
            with self._lock:
                self.inflight -= 1

    def _limiter(self, req: Request) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The answer of the first-request-per-URL or token-bucket mode, if it refuses."""
        refuse = None
        with self._lock:
            if self.first_per_url is not None and (req.method, req.path) not in self._seen_urls:
                self._seen_urls.add((req.method, req.path))
                refuse = self.first_per_url
            if refuse is None and self.rate_limit:
                now = time.monotonic()
                elapsed, self._refilled = now - self._refilled, now
                self._tokens = min(self.rate_limit, self._tokens + elapsed * self.rate_limit)
                if self._tokens >= 1:
                    self._tokens -= 1
                else:
                    refuse = 429
            if refuse is None:
                return None
            self.throttled += 1
        if refuse == 429:
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited"}]}'
            headers = [("Retry-After", "1"), ("Content-Type", "application/json")]
            return 429, headers, body
        body = b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
        return refuse, [("Content-Type", "application/json")], body

    def _cut(self, req: Request, fault: Fault) -> None:
        """What the registry sees of a reset body or a lost reply."""
        if fault.kind == "lost":
            _, up_headers, _ = self._forward(req)
            if "/blobs/uploads/" in req.path:
                with self._lock:
                    self._aliases.setdefault(req.path.partition("?")[0], "")
                self._follow(req, up_headers)
            return
        part = req.body[: fault.after]
        if req.method not in ("PATCH", "PUT") or not part:
            return
        path = re.sub(r"[&?]digest=[^&]*", "", req.path)
        headers = {k: v for k, v in req.headers.items() if k != "content-range"}
        start = req.header("content-range")
        if start:
            first = int(start.split("-")[0])
            headers["content-range"] = f"{first}-{first + len(part) - 1}"
        _, up_headers, _ = self._forward(Request("PATCH", path, headers, part))
        with self._lock:
            self._aliases.setdefault(req.path.partition("?")[0], "")
        self._follow(req, up_headers)

    def _aliased(self, req: Request) -> Request:
        """``req`` sent to the registry's current URL of its session, if it was cut."""
        base, _, query = req.path.partition("?")
        with self._lock:
            new = self._aliases.get(base)
        if not new:
            return req
        nbase, _, nquery = new.partition("?")
        keep = [p for p in query.split("&") if p.startswith("digest=")]
        q = "&".join(([nquery] if nquery else []) + keep)
        return Request(req.method, nbase + ("?" + q if q else ""), req.headers, req.body)

    def _follow(self, req: Request, headers: list[tuple[str, str]]) -> None:
        """Keep the alias of a cut session on the registry's latest Location."""
        base = req.path.partition("?")[0]
        loc = next((v for k, v in headers if k.lower() == "location"), None)
        if loc is None:
            return
        path = re.sub(r"^https?://[^/]+", "", loc)
        with self._lock:
            for old, new in list(self._aliases.items()):
                if old == base or new.partition("?")[0] == base:
                    if "/blobs/uploads/" in path:
                        self._aliases[old] = path
                    else:  # the session is closed: its URL is unknown from now on
                        del self._aliases[old]

    def _own_answer(
        self, sock: socket.socket, rec: Record, req: Request, fault: Fault
    ) -> bool | None:
        """Answer without forwarding; returns whether to keep the connection, or None if the
        fault needs the upstream answer."""
        if fault.kind == "status":
            self._send(sock, rec, fault.status, list(fault.headers), fault.content)
            return True
        if fault.kind == "drop":
            _reset(sock)
            raise _Abort
        if fault.kind == "redirect":
            target = "/_redirected" + req.path if fault.other_path else req.path
            self._send(sock, rec, fault.status, [("Location", target)], b"")
            return True
        if fault.kind == "generated":
            self._send_generated(sock, rec, fault)
            return not fault.no_length
        return None

    def _forward(self, req: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send ``req`` upstream on a connection of its own (never re-sent: a request that
        failed may have been acted on) and return the whole answer."""
        headers = {k: v for k, v in req.headers.items() if k not in _HOP_BY_HOP}
        if not self.range_support:
            headers.pop("range", None)
        headers["content-length"] = str(len(req.body))
        if req.method in ("GET", "HEAD", "DELETE") and not req.body:
            headers.pop("content-length")
        headers["connection"] = "close"
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.request(req.method, req.path, body=req.body or None, headers=headers)
            resp = upstream.getresponse()
            body = resp.read(MAX_BODY + 1) if req.method != "HEAD" else b""
            if len(body) > MAX_BODY:
                raise ValueError("upstream body too large")
            return resp.status, list(resp.getheaders()), body
        finally:
            upstream.close()

    def _fix_headers(
        self, req: Request, status: int, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        out = []
        up = f"http://{self.upstream[0]}:{self.upstream[1]}"
        for k, v in headers:
            lk = k.lower()
            if lk in _HOP_BY_HOP or (lk == "content-length" and req.method != "HEAD"):
                continue
            if lk == "accept-ranges" and not self.range_support:
                continue
            if lk == "location" and v.startswith(up):
                v = f"http://{self.host}" + v[len(up) :]
            out.append((k, v))
        if (
            self.chunk_min_length is not None
            and req.method == "POST"
            and "/blobs/uploads/" in req.path
            and status == 202
        ):
            out.append(("OCI-Chunk-Min-Length", str(self.chunk_min_length)))
        return out

    def _send(
        self,
        sock: socket.socket,
        rec: Record,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        head_only: bool = False,
    ) -> None:
        head_only = head_only or rec.method == "HEAD" or status in (204, 304)
        rec.status = status
        names = {k.lower() for k, _ in headers}
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if "content-length" not in names and status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        for k, v in headers:
            if k.lower() == "content-range":
                rec.content_range = v
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock.sendall(data if head_only else data + body)
        if not head_only:
            rec.sent += len(body)

    def _send_generated(self, sock: socket.socket, rec: Record, fault: Fault) -> None:
        rec.status = fault.status
        lines = [f"HTTP/1.1 {fault.status} {_reason(fault.status)}"]
        lines += [f"{k}: {v}" for k, v in fault.headers]
        if fault.no_length:
            lines.append("Connection: close")
        else:
            lines.append(f"Content-Length: {fault.size}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        piece = b'{"x":"' + b"a" * (64 * 1024 - 6)
        left = fault.size
        first = True
        while left > 0 and not self._stopped.is_set():
            chunk = piece if first else b"a" * len(piece)
            first = False
            chunk = chunk[: min(left, len(chunk))]
            sock.sendall(chunk)
            rec.sent += len(chunk)
            left -= len(chunk)
        if fault.no_length:
            raise _Abort

    def _damaged(
        self,
        sock: socket.socket,
        rec: Record,
        fault: Fault,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Send the upstream answer damaged by ``fault``; the connection ends after it."""
        if fault.kind == "corrupt":
            if body:
                damaged = bytearray(body)
                for i in range(0, len(damaged), max(1, len(damaged) // 7)):
                    damaged[i] ^= 0x55
                body = bytes(damaged)
            self._send(sock, rec, status, headers, body)
            return
        head = [f"HTTP/1.1 {status} {_reason(status)}"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"Content-Length: {len(body)}")
        rec.status = status
        for k, v in headers:
            if k.lower() == "content-range":
                rec.content_range = v
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if fault.kind == "slow":
            step = max(1, int(fault.rate / 20))
            for i in range(0, len(body), step):
                if self._stopped.is_set():
                    raise _Abort
                sock.sendall(body[i : i + step])
                rec.sent += len(body[i : i + step])
                time.sleep(step / fault.rate)
            return
        part = body[: fault.after]
        sock.sendall(part)
        rec.sent += len(part)
        if fault.kind == "reset":
            _reset(sock)
            raise _Abort
        if fault.kind == "truncate":
            sock.shutdown(socket.SHUT_RDWR)
            raise _Abort
        if fault.kind == "stall":
            self._stopped.wait(fault.seconds)
            raise _Abort
        raise ValueError(f"unknown fault {fault.kind}")


def _reset(sock: socket.socket) -> None:
    """Make the coming close send RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"
