"""A registry front that sends blob downloads elsewhere, as registries backed by S3, GCS or
a CDN do, and the "blob storage" it sends them to.

:class:`RedirectFront` listens on ``127.0.0.1:<free port>`` (HTTPS when given
certificates) and forwards every request to an upstream registry, with its
``Authorization``, so the registry does the authentication. When the registry answers a
blob ``GET`` or ``HEAD`` with 200, the front instead answers :attr:`RedirectFront.status`
(307 by default) with a ``Location`` (absolute, or relative with ``relative=True``) on
:class:`BlobStore` — another server on another port — which serves the bytes the front
read from the registry, under a signed-URL-like query. Relative locations point back to
the front itself (``/_storage/...``), which serves them too.

Both record every request (method, path, whether ``Authorization`` was present).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from registry import Registry, TestCertificates

_BLOB = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: bool


def _serve(
    handler: type[BaseHTTPRequestHandler], certs: TestCertificates | None
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if certs is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.cert_file, certs.key_file)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@dataclass(eq=False)
class BlobStore:
    """Serves ``/blobs/<digest>?sig=…`` from memory; records requests."""

    certs: TestCertificates | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def base(self) -> str:
        assert self._server is not None
        scheme = "https" if self.certs else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> BlobStore:
        store = self

        class Handler(_Base):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                store.seen.append(Seen(self.command, url.path, "Authorization" in self.headers))
                digest = url.path.rpartition("/")[2]
                data = store.blobs.get(digest)
                if data is None or "sig=" not in url.query:
                    self._send(404, b"no such blob")
                    return
                self._send(200, data, {"Content-Type": "application/octet-stream"})

            do_HEAD = do_GET

        self._server = _serve(Handler, self.certs)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@dataclass(eq=False)
class RedirectFront:
    """Forwards to ``upstream``; blob GET/HEAD answered 200 upstream become redirects."""

    upstream: Registry
    store: BlobStore
    certs: TestCertificates | None = None
    status: int = 307
    relative: bool = False
    #: blob requests redirected
    redirected: list[Seen] = field(default_factory=list)
    #: requests served from ``/_storage/`` (relative redirects)
    local: list[Seen] = field(default_factory=list)
    on_blob: Callable[[str], None] | None = None
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """The mirror URL of the front: ``oci://…`` or ``oci+http://…``."""
        return f"{'oci' if self.certs else 'oci+http'}://{self.host}"

    def start(self) -> RedirectFront:
        front = self
        up = self.upstream

        class Handler(_Base):
            def _forward(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path.startswith("/_storage/"):
                    front.local.append(
                        Seen(self.command, url.path, "Authorization" in self.headers)
                    )
                    data = front.store.blobs.get(url.path.rpartition("/")[2])
                    self._send(200 if data else 404, data or b"")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn: http.client.HTTPConnection
                if up.tls:
                    conn = http.client.HTTPSConnection(
                        "127.0.0.1", up.port, context=up.ssl_context(), timeout=30
                    )
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=30)
                with contextlib.closing(conn):
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    m = _BLOB.match(url.path)
                    if m and resp.status == 200 and self.command in ("GET", "HEAD"):
                        digest = m.group(2)
                        if self.command == "GET":
                            front.store.blobs[digest] = data
                        elif digest not in front.store.blobs:
                            # HEAD has no body: fetch it once so the store can serve it.
                            conn2 = (
                                http.client.HTTPSConnection(
                                    "127.0.0.1", up.port, context=up.ssl_context(), timeout=30
                                )
                                if up.tls
                                else http.client.HTTPConnection("127.0.0.1", up.port, timeout=30)
                            )
                            with contextlib.closing(conn2):
                                conn2.request("GET", self.path, headers=headers)
                                front.store.blobs[digest] = conn2.getresponse().read()
                        front.redirected.append(
                            Seen(self.command, url.path, "Authorization" in self.headers)
                        )
                        if front.on_blob:
                            front.on_blob(digest)
                        sig = secrets.token_hex(8)
                        loc = (
                            f"/_storage/{digest}"
                            if front.relative
                            else f"{front.store.base}/blobs/{digest}?sig={sig}&X-Amz-Expires=60"
                        )
                        self._send(front.status, b"", {"Location": loc})
                        return
                    out = {
                        k: v
                        for k, v in resp.getheaders()
                        if k.lower() not in _HOP and k.lower() != "content-length"
                    }
                    if self.command == "HEAD":
                        self.send_response(resp.status)
                        for k, v in resp.getheaders():
                            if k.lower() not in _HOP:
                                self.send_header(k, v)
                        self.end_headers()
                        return
                    self._send(resp.status, data, out)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self._server = _serve(Handler, self.certs)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
