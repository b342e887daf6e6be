"""A Docker/OAuth2 token server for the tests, and a real registry that trusts it.

:class:`TokenServer` implements the token endpoint of the Docker registry token spec on
loopback (``GET /token?service=…&scope=…`` with optional Basic credentials, and the OAuth2
``POST /token`` with ``grant_type=refresh_token`` or ``password``). It signs JWTs with an
ECDSA P-256 key (ES256) whose self-signed certificate goes into the token header (``x5c``)
and into the registry's ``rootcertbundle``, which is how distribution 2.8 finds the signing
key. It grants, per user and repository, the intersection of what was asked and what
:attr:`TokenServer.acl` allows (anonymous users get pull on :attr:`TokenServer.public`
repositories), and it counts every request so tests can assert how often clients come back.

:class:`TokenRegistry` is the CNCF distribution server (``docker-registry``) configured with
``auth: token: {realm, service, issuer, rootcertbundle}`` pointing at a token server; its
:meth:`~TokenRegistry.request` helper mints an all-access token itself, so the registry's
contents can be checked behind the client's back.

Needs the ``cryptography`` package (a dependency of ``trustme``, which the tests use anyway).
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from registry import Registry, TestCertificates

SERVICE = "spack-oci-rs-test-registry"
ISSUER = "spack-oci-rs-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    method: str
    user: str | None  #: the authenticated user, or None (anonymous or rejected)
    scopes: tuple[str, ...]  #: the ``scope`` parameters, as sent
    service: str | None
    client_id: str | None
    grant_type: str | None  #: for POST: ``refresh_token`` / ``password``
    status: int
    granted: tuple[tuple[str, tuple[str, ...]], ...]  #: (repository, actions) granted


class _Signer:
    """An ES256 key and its self-signed certificate."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spack-oci-rs token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + _b64url(sig)


@dataclass(eq=False)
class TokenServer:
    """The token endpoint, on ``127.0.0.1:<free port>``; HTTPS when given ``certs``.

    Configure (also while running): :attr:`users` (name -> password),
    :attr:`refresh_tokens` (identity token -> user), :attr:`acl` (user -> {repository
    pattern (``fnmatch``-like: ``*`` matches anything) -> actions}), :attr:`public`
    (repository patterns anonymous users may pull), :attr:`expires_in`, :attr:`token_field`
    (``token``, ``access_token`` or ``both``), :attr:`fail_status` (answer every request
    with this status), :attr:`delay` (seconds before answering), :attr:`bad_tokens` (this
    many of the next tokens are already expired, so the registry rejects them).
    """

    certs: TestCertificates | None = None
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    acl: dict[str, dict[str, Sequence[str]]] = field(default_factory=dict)
    public: list[str] = field(default_factory=list)
    expires_in: int | None = 300
    token_field: str = "token"
    fail_status: int | None = None
    delay: float = 0.0
    bad_tokens: int = 0
    requests: list[TokenRequest] = field(default_factory=list, init=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    signer: _Signer = field(default_factory=_Signer, init=False, repr=False)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> TokenServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        if self.certs is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certs.cert_file, self.certs.key_file)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def realm(self) -> str:
        scheme = "https" if self.certs is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/token"

    def write_rootcertbundle(self, path: Path) -> Path:
        path.write_bytes(self.signer.cert_pem())
        return path

    # -- counting --------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, *, scope: str | None = None, user: str | None = None) -> int:
        """Requests answered, optionally only those asking for exactly ``scope`` among their
        scopes, or made by ``user``."""
        with self._lock:
            reqs = list(self.requests)
        return sum(
            1
            for r in reqs
            if (scope is None or scope in r.scopes) and (user is None or r.user == user)
        )

    def scope_counts(self) -> Counter[tuple[str, ...]]:
        """How many token requests asked for each set of scopes."""
        with self._lock:
            return Counter(r.scopes for r in self.requests)

    # -- tokens ----------------------------------------------------------------------------

    def allowed(self, user: str | None, repository: str) -> set[str]:
        allowed: set[str] = set()
        if any(_match(p, repository) for p in self.public):
            allowed.add("pull")
        if user is not None:
            for pattern, actions in self.acl.get(user, {}).items():
                if _match(pattern, repository):
                    allowed.update(actions)
        return allowed

    def mint(
        self,
        access: Mapping[str, Sequence[str]],
        *,
        subject: str = "test",
        lifetime: int = 300,
        audience: str = SERVICE,
        issuer: str = ISSUER,
        type_: str = "repository",
    ) -> str:
        """A signed token granting ``access`` ({repository: actions}), for direct use."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": [
                {"type": type_, "name": name, "actions": list(actions)}
                for name, actions in access.items()
            ],
        }
        return self.signer.sign(claims)

    def _grant(self, user: str | None, scopes: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        granted = []
        for scope in scopes:
            for one in scope.split(" "):
                parts = one.split(":")
                if len(parts) < 3 or parts[0] != "repository":
                    continue
                name, wanted = ":".join(parts[1:-1]), parts[-1].split(",")
                ok = tuple(a for a in wanted if a in self.allowed(user, name))
                if ok:
                    granted.append((name, ok))
        return granted


def _match(pattern: str, name: str) -> bool:
    regex = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(regex, name) is not None


def _handler(ts: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="spack-oci-rs token server"')
            self.end_headers()
            self.wfile.write(data)

        def _basic_user(self) -> tuple[bool, str | None]:
            """(authenticated or anonymous ok, user)."""
            header = self.headers.get("Authorization")
            if not header:
                return True, None
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return False, None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False, None
            if ts.users.get(user) == password and password:
                return True, user
            return False, None

        def _finish(
            self,
            method: str,
            ok: bool,
            user: str | None,
            params: Mapping[str, list[str]],
            grant_type: str | None,
        ) -> None:
            if ts.delay:
                time.sleep(ts.delay)
            scopes = params.get("scope", [])
            if method == "POST":
                scopes = [s for one in scopes for s in one.split(" ") if s]
            service = (params.get("service") or [None])[0]
            client_id = (params.get("client_id") or [None])[0]
            granted = ts._grant(user, scopes) if ok else []
            status = ts.fail_status or (200 if ok else 401)
            with ts._lock:
                ts.requests.append(
                    TokenRequest(
                        method,
                        user,
                        tuple(scopes),
                        service,
                        client_id,
                        grant_type,
                        status,
                        tuple(granted),
                    )
                )
            if status != 200:
                self._answer(status, {"errors": [{"code": "UNAUTHORIZED", "message": "no"}]})
                return
            with ts._lock:
                bad = ts.bad_tokens > 0
                ts.bad_tokens -= int(bad)
            # Expired beyond distribution's 60 s leeway: the registry answers 401.
            lifetime = -300 if bad else 300
            token = ts.mint(dict(granted), subject=user or "", lifetime=lifetime)
            body: dict[str, Any] = {}
            if ts.token_field in ("token", "both"):
                body["token"] = token
            if ts.token_field in ("access_token", "both") or method == "POST":
                body["access_token"] = token
            if ts.expires_in is not None:
                body["expires_in"] = ts.expires_in
            body["issued_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
            self._answer(200, body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self._answer(404, {})
                return
            params = urllib.parse.parse_qs(url.query)
            ok, user = self._basic_user()
            self._finish("GET", ok, user, params, None)

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if url.path != "/token":
                self._answer(404, {})
                return
            params = urllib.parse.parse_qs(raw)
            grant = (params.get("grant_type") or [None])[0]
            user: str | None = None
            ok = False
            if grant == "refresh_token":
                user = ts.refresh_tokens.get((params.get("refresh_token") or [""])[0])
                ok = user is not None
            elif grant == "password":
                name = (params.get("username") or [""])[0]
                ok = bool(name) and ts.users.get(name) == (params.get("password") or [""])[0]
                user = name if ok else None
            self._finish("POST", ok, user, params, grant)

    return Handler


@dataclass(eq=False)
class TokenRegistry(Registry):
    """``docker-registry`` with token auth against :attr:`token_server` (set before start)."""

    token_server: TokenServer | None = None

    def _config(self) -> str:
        assert self.token_server is not None, "token_server must be set"
        bundle = self.token_server.write_rootcertbundle(self.workdir / "token-signer.pem")
        q = json.dumps
        return super()._config() + "\n".join(
            [
                "auth:",
                "  token:",
                f"    realm: {q(self.token_server.realm)}",
                f"    service: {q(SERVICE)}",
                f"    issuer: {q(ISSUER)}",
                f"    rootcertbundle: {q(str(bundle))}",
                "",
            ]
        )

    def request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        auth: bool = True,
        timeout: float = 30,
    ) -> Any:
        """As :meth:`Registry.request`, with an all-access token for the path's repository
        (minted here, not asked of the token server, so its counts stay the client's)."""
        headers = dict(headers or {})
        if auth and "Authorization" not in headers and self.token_server is not None:
            m = re.match(r"^/v2/(.+?)/(blobs|manifests|tags)/", path)
            access = {m.group(1): ["pull", "push", "delete"]} if m else {}
            token = self.token_server.mint(access, subject="admin")
            headers["Authorization"] = f"Bearer {token}"
        return super().request(
            method, path, headers=headers, data=data, auth=False, timeout=timeout
        )


def running(workdir: Path, *, tls: bool = True, **token_kw: Any) -> Iterator[TokenRegistry]:
    """Start a token server and a registry that trusts it; yield the registry (its
    ``token_server`` attribute is the server). For fixtures: ``yield from running(...)``."""
    from registry import make_certificates

    certs = make_certificates(workdir / "tls") if tls else None
    with TokenServer(certs=certs, **token_kw) as ts:
        reg = TokenRegistry(workdir / "registry", tls=tls, token_server=ts)
        reg.certs = certs
        with reg:
            yield reg
