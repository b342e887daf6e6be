"""A small forward HTTP proxy on loopback that records what goes through it.

:class:`ForwardProxy` listens on ``127.0.0.1:<free port>`` and serves, like squid or
tinyproxy would for ``http_proxy``/``https_proxy``:

* absolute-form requests (``GET http://host:port/path HTTP/1.1``), for plain-HTTP
  destinations: the request goes to the destination in origin-form, ``Proxy-*`` headers
  removed, and the answer comes back;
* ``CONNECT host:port`` for https destinations: ``200 Connection established``, then bytes
  are relayed both ways (the TLS session is end to end: the proxy sees nothing inside).

Each client connection carries one request (the proxy answers ``Connection: close``), so
every request is seen and recorded in :attr:`ForwardProxy.records`: method, target, whether
it carried ``Authorization`` / ``Proxy-Authorization``. Requests to ports outside
:attr:`ForwardProxy.allowed_ports` (default: any loopback port) are refused with 403:
the proxy only ever connects to 127.0.0.1 / localhost / ::1.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import urllib.parse
from dataclasses import dataclass, field

#: Header lines and request lines longer than this are refused.
MAX_HEAD = 64 * 1024
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Record:
    method: str
    target: str  #: ``http://host:port/path`` (absolute form) or ``host:port`` (CONNECT)
    host: str  #: the destination ``host:port``
    authorization: bool  #: an ``Authorization`` header came through the proxy in the clear
    proxy_authorization: bool
    status: int  #: what the proxy answered (200 for an established tunnel)


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass(eq=False)
class ForwardProxy:
    """``with ForwardProxy() as proxy: os.environ["http_proxy"] = proxy.url``"""

    records: list[Record] = field(default_factory=list, init=False)
    _server: socketserver.ThreadingTCPServer | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (for ``http_proxy`` / ``https_proxy``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def seen(self, *, method: str | None = None, host: str | None = None) -> list[Record]:
        with self._lock:
            return [
                r
                for r in self.records
                if (method is None or r.method == method) and (host is None or r.host == host)
            ]

    # -- one connection ----------------------------------------------------------------------

    def _record(self, rec: Record) -> None:
        with self._lock:
            self.records.append(rec)

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(30)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
                if len(head) > MAX_HEAD:
                    client.sendall(b"HTTP/1.1 431 Too Large\r\nConnection: close\r\n\r\n")
                    return
        except OSError:
            return
        raw_head, _, rest = head.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            return
        headers = [tuple(s.strip() for s in line.split(":", 1)) for line in lines[1:] if line]
        names = {h[0].lower() for h in headers}

        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:
            url = urllib.parse.urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                self._refuse(client, method, target, "", names, 400)
                return
            host, port = url.hostname, str(url.port or 80)
        dest = f"{host}:{port}"
        if host not in _LOOPBACK or not port.isdigit():
            self._refuse(client, method, target, dest, names, 403)
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except OSError:
            self._refuse(client, method, target, dest, names, 502)
            return
        with upstream:
            if method == "CONNECT":
                self._record(
                    Record(
                        method,
                        target,
                        dest,
                        "authorization" in names,
                        "proxy-authorization" in names,
                        200,
                    )
                )
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                self._record(
                    Record(
                        method,
                        target,
                        dest,
                        "authorization" in names,
                        "proxy-authorization" in names,
                        0,
                    )
                )
                path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
                out = [f"{method} {path} {version}"]
                for name, *value in headers:
                    if name.lower() in ("proxy-authorization", "proxy-connection", "connection"):
                        continue
                    out.append(f"{name}: {value[0] if value else ''}")
                out.append("Connection: close")
                upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
            t = threading.Thread(target=_relay, args=(client, upstream), daemon=True)
            t.start()
            _relay(upstream, client)
            t.join(timeout=5)

    def _refuse(
        self,
        client: socket.socket,
        method: str,
        target: str,
        dest: str,
        names: set[str],
        status: int,
    ) -> None:
        self._record(
            Record(
                method,
                target,
                dest,
                "authorization" in names,
                "proxy-authorization" in names,
                status,
            )
        )
        client.sendall(
            f"HTTP/1.1 {status} Refused by test proxy\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
