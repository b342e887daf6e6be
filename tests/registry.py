"""A real OCI registry for the tests: the CNCF distribution server (`docker-registry`).

Each :class:`Registry` runs one ``docker-registry serve`` process on 127.0.0.1 with a free
port, filesystem storage in its own directory, an explicit config, and its log in a file.
Variants: plain HTTP, HTTPS with a test CA (made with the ``openssl`` CLI, the same recipe as
``tests/common/mod.rs``), and HTTPS + htpasswd (bcrypt) basic auth.

Besides the server, this module has small helpers the tests build on:

* :func:`skopeo` runs skopeo with ``--insecure-policy`` and raises with its stderr;
  :meth:`Registry.skopeo` adds the TLS/creds flags that fit the registry;
* :func:`make_oci_layout` writes a tiny OCI image layout with Python only, and
  :meth:`Registry.push_base_image` pushes one (OCI or Docker v2 schema 2 manifest);
* :meth:`Registry.request` and friends talk to the registry's HTTP API with urllib.

Run ``python tests/registry.py [--tls] [--auth]`` to start one by hand; it prints how to use
it and serves until Ctrl-C.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Literal

DOCKER_REGISTRY = "docker-registry"
SKOPEO = "skopeo"
OPENSSL = "openssl"

#: How long to wait for the server to answer ``GET /v2/`` after it starts.
START_TIMEOUT = 20.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: Accept header that asks for any manifest type the registry may hold.
ALL_MANIFESTS = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])


class RegistryError(RuntimeError):
    """The registry did not start, died, or answered unexpectedly."""


class SkopeoError(RuntimeError):
    """skopeo exited non-zero; the message holds the command and its stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"skopeo failed (exit {returncode}): {' '.join(cmd)}\n"
            f"--- stderr ---\n{stderr.strip()}\n--- stdout ---\n{stdout.strip()}"
        )
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def missing_tools(*, need_skopeo: bool = False) -> list[str]:
    """Names of the external programs these fixtures need that are not on PATH."""
    tools = [DOCKER_REGISTRY, OPENSSL] + ([SKOPEO] if need_skopeo else [])
    return [t for t in tools if shutil.which(t) is None]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_counter = itertools.count()


def unique_repo_name(hint: str = "repo") -> str:
    """A repository name no other test uses: ``<hint>-<n>-<random>``, valid per the OCI spec.

    ``hint`` (e.g. a test's name) is lowercased and reduced to ``[a-z0-9-]``; slashes are kept
    so ``unique_repo_name("cache/x")`` gives a nested name like ``cache/x-3-1a2b3c``.
    """
    parts = []
    for part in hint.lower().split("/"):
        part = re.sub(r"[^a-z0-9]+", "-", part).strip("-")[:40].strip("-")
        if part:
            parts.append(part)
    base = "/".join(parts) or "repo"
    return f"{base}-{next(_counter)}-{secrets.token_hex(3)}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_setup() -> None:  # runs in the child between fork and exec
    # Own session: a Ctrl-C in the terminal goes to pytest, which then stops the server.
    os.setsid()
    # And if the test process dies without stopping it (SIGKILL...), the kernel sends
    # SIGTERM to the server, so no registry outlives its tests (Linux only).
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


#: Registries started and not yet stopped, stopped at exit as a last resort.
_running: set[Registry] = set()


@atexit.register
def _stop_all() -> None:
    for reg in list(_running):
        reg.stop()


def _run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RegistryError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc


# ---------------------------------------------------------------------------------------------
# Certificates and passwords (the same recipe as tests/common/mod.rs)
# ---------------------------------------------------------------------------------------------

_CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = spack-oci-rs test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""

_SERVER_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TestCertificates:
    """A test CA and a server certificate for 127.0.0.1, ::1 and localhost (ECDSA P-256)."""

    __test__ = False  # not a pytest test class

    ca_file: Path  #: the CA certificate, PEM (give this to clients); alone in its directory
    cert_file: Path  #: the server certificate, PEM
    key_file: Path  #: the server's private key, PEM (PKCS#8)
    cert_dir: Path  #: a directory holding only ``ca.crt``, for skopeo's ``--cert-dir``


def make_certificates(directory: Path) -> TestCertificates:
    """Create a CA and a server certificate signed by it in ``directory`` (openssl CLI).

    ``ca/ca.pem`` is the CA certificate, alone in ``ca/`` (a directory of CA files for
    clients), and ``certs.d/ca.crt`` the same for skopeo; the rest (keys, server
    certificate, openssl configs) stays in ``directory``.
    """
    (directory / "ca").mkdir(parents=True, exist_ok=True)
    (directory / "ca.cnf").write_text(_CA_CNF)
    (directory / "server.cnf").write_text(_SERVER_CNF)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [OPENSSL, "req", "-x509", "-config", "ca.cnf", *ec, "-keyout", "ca.key",
         "-out", "ca/ca.pem", "-days", "30", "-sha256"],
        cwd=directory,
    )  # fmt: skip
    _run(
        [OPENSSL, "req", "-new", "-config", "server.cnf", *ec, "-keyout", "server.key",
         "-out", "server.csr"],
        cwd=directory,
    )  # fmt: skip
    _run(
        [OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca/ca.pem", "-CAkey", "ca.key",
         "-set_serial", "0x" + secrets.token_hex(8), "-days", "30", "-sha256",
         "-extfile", "server.cnf", "-extensions", "v3_server", "-out", "server.pem"],
        cwd=directory,
    )  # fmt: skip
    cert_dir = directory / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    shutil.copyfile(directory / "ca" / "ca.pem", cert_dir / "ca.crt")
    return TestCertificates(
        ca_file=directory / "ca" / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        cert_dir=cert_dir,
    )


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd line (cost 4: the registry checks it on every request)."""
    try:
        import bcrypt
    except ImportError:
        proc = _run(["htpasswd", "-nbB", "-C", "4", username, password])
        return proc.stdout.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{username}:{hashed}"


# ---------------------------------------------------------------------------------------------
# skopeo
# ---------------------------------------------------------------------------------------------


def skopeo(
    *args: str | os.PathLike[str], check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``skopeo --insecure-policy ARGS...``; raise :class:`SkopeoError` if it fails.

    No TLS or credential flags are added here: see :meth:`Registry.skopeo` for that.
    """
    cmd = [SKOPEO, "--insecure-policy", *(os.fspath(a) for a in args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise SkopeoError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


# ---------------------------------------------------------------------------------------------
# A tiny OCI image layout, made with Python only
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OciLayout:
    """An OCI image layout on disk holding one single-platform image under ``tag``."""

    path: Path
    tag: str
    manifest_digest: str
    config_digest: str
    layer_digests: list[str]  #: compressed (gzip) layer digests, in order
    diff_ids: list[str]  #: uncompressed layer digests, as in the config's rootfs

    @property
    def skopeo_ref(self) -> str:
        """``oci:<dir>:<tag>``, the source for ``skopeo copy``."""
        return f"oci:{self.path}:{self.tag}"


def _tar_layer(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name in sorted(files):
            parents = Path(name).parents
            for parent in reversed(list(parents)[:-1]):
                if str(parent) not in dirs:
                    dirs.add(str(parent))
                    info = tarfile.TarInfo(str(parent))
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = 0
                    tar.addfile(info)
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_oci_layout(
    directory: Path,
    *,
    tag: str = "latest",
    layers: Sequence[Mapping[str, bytes]] | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    labels: Mapping[str, str] | None = None,
) -> OciLayout:
    """Write an OCI image layout with one image in ``directory`` and return its digests.

    ``layers`` is a list of ``{path inside the image: bytes}``, one mapping per layer; by
    default one small layer with ``etc/os-release`` and a file naming the layout's directory,
    so two layouts made in different directories differ.
    """
    if layers is None:
        layers = [
            {
                "etc/os-release": b'NAME="spack-oci-rs test base"\nID=testbase\n',
                "etc/testbase-id": str(directory).encode() + b"\n",
            }
        ]
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256_digest(data)
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
        return digest

    layer_descs, diff_ids, layer_digests = [], [], []
    for files in layers:
        tar = _tar_layer(files)
        gz = gzip.compress(tar, compresslevel=6, mtime=0)
        digest = put(gz)
        diff_ids.append(sha256_digest(tar))
        layer_digests.append(digest)
        layer_descs.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(gz)})

    config: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "config": {"Env": list(env), "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "spack-oci-rs tests", "comment": "test base layer"}]
        * len(diff_ids),
    }
    if labels:
        config["config"]["Labels"] = dict(labels)
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = put(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": architecture, "os": os_name},
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index, indent=2))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return OciLayout(directory, tag, manifest_digest, config_digest, layer_digests, diff_ids)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    """An HTTP answer (any status: :meth:`Registry.request` does not raise on 4xx/5xx)."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class BaseImage:
    """An image pushed to a registry with :meth:`Registry.push_base_image`."""

    repo: str
    tag: str
    #: ``127.0.0.1:PORT/<repo>:<tag>`` (what ``spack buildcache push --base-image`` takes)
    ref: str
    format: Literal["oci", "v2s2"]
    media_type: str  #: the manifest's media type, as the registry serves it
    manifest_digest: str  #: digest of the manifest bytes the registry serves
    manifest_bytes: bytes
    manifest: dict[str, Any]
    config_digest: str
    config: dict[str, Any]
    layer_digests: list[str]
    diff_ids: list[str]


#: A line of the registry's access log: ``... "GET /v2/... HTTP/1.1" 200 2 "" "agent"``.
_ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" \d+ \d+ "[^"]*" "(?P<agent>[^"]*)"'
)


@dataclass(eq=False)
class Registry:
    """One ``docker-registry serve`` process. Use as a context manager or start()/stop()."""

    workdir: Path
    tls: bool = False
    auth: bool = False
    username: str | None = None
    password: str | None = None
    port: int = 0
    #: set once started
    certs: TestCertificates | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    # -- addresses ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``"""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` or ``https://127.0.0.1:PORT``"""
        return f"{self.scheme}://{self.host}"

    @property
    def url(self) -> str:
        """The Spack mirror URL of the registry: ``oci+http://HOST`` or ``oci://HOST``."""
        return f"oci://{self.host}" if self.tls else f"oci+http://{self.host}"

    def repo_url(self, name: str) -> str:
        """Spack mirror URL of repository ``name``: ``oci+http://HOST/name`` / ``oci://HOST/name``"""
        return f"{self.url}/{name}"

    def image_ref(self, repo: str, tag: str = "latest") -> str:
        """``127.0.0.1:PORT/<repo>:<tag>``"""
        return f"{self.host}/{repo}:{tag}"

    def docker_ref(self, repo: str, tag: str = "latest") -> str:
        """``docker://127.0.0.1:PORT/<repo>:<tag>``, for skopeo."""
        return f"docker://{self.image_ref(repo, tag)}"

    @property
    def ca_file(self) -> Path | None:
        """The test CA (PEM) that signed the server certificate; None for plain HTTP."""
        return self.certs.ca_file if self.certs else None

    @property
    def cert_dir(self) -> Path | None:
        """A directory with ``ca.crt`` only (skopeo's ``--cert-dir``); None for plain HTTP."""
        return self.certs.cert_dir if self.certs else None

    @property
    def creds(self) -> str | None:
        """``user:password`` (skopeo's ``--creds``), or None without auth."""
        return f"{self.username}:{self.password}" if self.auth else None

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def log_file(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "storage"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle ------------------------------------------------------------------------

    def _config(self) -> str:
        # Written out as YAML by hand: every value is simple, and this keeps the config
        # readable in the work directory (JSON is valid YAML, so values are dumped as JSON).
        q = json.dumps
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {q(str(self.storage_dir))}",
            "  delete:",
            "    enabled: true",
            "  redirect:",
            "    disable: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "    readonly:",
            "      enabled: false",
            "http:",
            f"  addr: {q(self.host)}",
            f"  secret: {q(secrets.token_hex(16))}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.certs:
            lines += [
                "  tls:",
                f"    certificate: {q(str(self.certs.cert_file))}",
                f"    key: {q(str(self.certs.key_file))}",
            ]
        if self.auth:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: spack-oci-rs-test",
                f"    path: {q(str(self.workdir / 'htpasswd'))}",
            ]
        # health: no section, so no storage-driver health checks run.
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        if self._proc is not None:
            return self
        missing = missing_tools()
        if missing:
            raise RegistryError(f"not on PATH: {', '.join(missing)}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        if self.tls and self.certs is None:
            self.certs = make_certificates(self.workdir / "tls")
        if self.auth:
            self.username = self.username or "spack"
            self.password = self.password or "pw-" + secrets.token_urlsafe(12)
            (self.workdir / "htpasswd").write_text(
                htpasswd_line(self.username, self.password) + "\n"
            )
        fixed_port = self.port != 0
        for attempt in itertools.count(1):
            if not fixed_port:
                self.port = _free_port()
            self.config_file.write_text(self._config())
            try:
                self._spawn_and_wait()
                return self
            except RegistryError:
                # Another process may have taken the port between probing and binding.
                if fixed_port or attempt >= 3 or "address already in use" not in self.log():
                    raise
        raise AssertionError("unreachable")

    def _spawn_and_wait(self) -> None:
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_child_setup,
            )
        _running.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise RegistryError(
                    f"docker-registry exited with {code} while starting\n{self.log_tail()}"
                )
            try:
                status = self.request("GET", "/v2/", timeout=2).status
                if status in (200, 401):
                    return
                last_error = f"GET /v2/ answered {status}"
            except OSError as e:
                last_error = repr(e)
            time.sleep(0.05)
        self.stop()
        raise RegistryError(
            f"docker-registry did not answer GET /v2/ within {START_TIMEOUT}s ({last_error})\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and reap it."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs -----------------------------------------------------------------------------

    def log_offset(self) -> int:
        """Current size of the log, to later read only what was written since."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log(self, since: int = 0) -> str:
        """The server's log (stdout+stderr) from byte offset ``since`` on."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def blob_user_agents(self, since: int = 0) -> dict[str, set[str]]:
        """The User-Agents of blob uploads (POST/PATCH/PUT under ``/blobs/uploads/``) and blob
        downloads (GET ``/blobs/sha256:``) in the access log since byte offset ``since``."""
        found: dict[str, set[str]] = {"upload": set(), "download": set()}
        for m in _ACCESS_LINE.finditer(self.log(since)):
            method, uri, agent = m.group("method"), m.group("uri"), m.group("agent")
            if "/blobs/uploads/" in uri and method in ("POST", "PATCH", "PUT"):
                found["upload"].add(agent)
            elif "/blobs/sha256:" in uri and method == "GET":
                found["download"].add(agent)
        return found

    def log_tail(self, lines: int = 40) -> str:
        text = self.log().splitlines()[-lines:]
        return f"--- {self.log_file} (last {len(text)} lines) ---\n" + "\n".join(text)

    # -- HTTP API -------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context that trusts the test CA (None for plain HTTP)."""
        if self.certs is None:
            return None
        return ssl.create_default_context(cafile=str(self.certs.ca_file))

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        auth: bool = True,
        timeout: float = 30,
    ) -> Response:
        """``method`` ``path`` (e.g. ``/v2/``) on the registry; returns any status.

        With ``auth`` (the default) and an auth registry, sends the known credentials
        preemptively as Basic auth.
        """
        req = urllib.request.Request(self.base + path, data=data, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if auth and self.auth and "Authorization" not in (headers or {}):
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.headers, e.read())

    def _expect(self, resp: Response, ok: Sequence[int], what: str) -> Response:
        if resp.status not in ok:
            raise RegistryError(f"{what}: HTTP {resp.status}: {resp.body[:500]!r}")
        return resp

    def get_manifest(self, repo: str, reference: str, accept: str = ALL_MANIFESTS) -> Response:
        """GET a manifest by tag or digest; raise unless 200."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
        return self._expect(resp, [200], f"GET manifest {repo}:{reference}")

    def manifest_exists(self, repo: str, reference: str) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ALL_MANIFESTS}
        )
        return resp.status == 200

    def manifest_digest(self, repo: str, reference: str) -> str:
        """The digest (``Docker-Content-Digest``) of the manifest a tag points to."""
        resp = self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ALL_MANIFESTS}
        )
        self._expect(resp, [200], f"HEAD manifest {repo}:{reference}")
        digest = resp.headers["Docker-Content-Digest"]
        assert digest, "registry sent no Docker-Content-Digest"
        return str(digest)

    def delete_manifest(self, repo: str, reference: str) -> str:
        """Delete a manifest by tag or digest; returns the digest deleted.

        distribution 2.8 deletes only by digest (a tag is resolved first); deleting a
        manifest also removes the tags that pointed to it. Blobs stay.
        """
        digest = reference if ":" in reference else self.manifest_digest(repo, reference)
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}")
        self._expect(resp, [202], f"DELETE manifest {repo}@{digest}")
        return digest

    def list_tags(self, repo: str) -> list[str]:
        """Tags of ``repo`` ([] if the repository does not exist)."""
        resp = self.request("GET", f"/v2/{repo}/tags/list?n=10000")
        if resp.status == 404:
            return []
        tags = self._expect(resp, [200], f"GET tags of {repo}").json().get("tags")
        return sorted(tags or [])

    def catalog(self) -> list[str]:
        resp = self._expect(self.request("GET", "/v2/_catalog?n=10000"), [200], "GET catalog")
        return list(resp.json().get("repositories") or [])

    def get_blob(self, repo: str, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}")
        return self._expect(resp, [200], f"GET blob {repo}@{digest}").body

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200

    def delete_blob(self, repo: str, digest: str) -> None:
        resp = self.request("DELETE", f"/v2/{repo}/blobs/{digest}")
        self._expect(resp, [202], f"DELETE blob {repo}@{digest}")

    # -- skopeo ---------------------------------------------------------------------------

    def skopeo_flags(self, prefix: Literal["", "src", "dest"] = "") -> list[str]:
        """skopeo flags for this registry: ``--[src-|dest-]{tls-verify,cert-dir,creds}``."""
        p = f"--{prefix}-" if prefix else "--"
        if not self.tls:
            flags = [f"{p}tls-verify=false"]
        else:
            assert self.certs is not None
            flags = [f"{p}tls-verify=true", f"{p}cert-dir={self.certs.cert_dir}"]
        if self.auth:
            flags.append(f"{p}creds={self.creds}")
        return flags

    def skopeo(
        self, subcommand: str, *args: str | os.PathLike[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``skopeo --insecure-policy SUBCOMMAND <flags for this registry> ARGS...``.

        For ``copy``/``sync`` the flags are added for whichever of source and destination is
        a ``docker://`` reference to this registry (``--src-*`` / ``--dest-*``); for the other
        subcommands (``inspect``, ``delete``, ``list-tags``…) the plain ``--tls-verify`` etc.
        """
        str_args = [os.fspath(a) for a in args]
        if subcommand in ("copy", "sync"):
            positional = [a for a in str_args if not a.startswith("-")]
            mine = f"docker://{self.host}/"
            flags: list[str] = []
            if len(positional) >= 2:
                if positional[-2].startswith(mine):
                    flags += self.skopeo_flags("src")
                if positional[-1].startswith(mine):
                    flags += self.skopeo_flags("dest")
            else:
                flags = self.skopeo_flags("src") + self.skopeo_flags("dest")
        else:
            flags = self.skopeo_flags()
        return skopeo(subcommand, *flags, *str_args, check=check)

    def inspect(self, repo: str, tag: str = "latest", *, raw: bool = False) -> Any:
        """``skopeo inspect [--raw] docker://HOST/repo:tag``, parsed from JSON."""
        extra = ["--raw"] if raw else []
        out = self.skopeo("inspect", *extra, self.docker_ref(repo, tag)).stdout
        return json.loads(out)

    def push_layout(
        self,
        layout: OciLayout,
        repo: str,
        tag: str | None = None,
        *,
        format: Literal["oci", "v2s2"] = "oci",
    ) -> None:
        """``skopeo copy --format FORMAT oci:<layout>:<tag> docker://HOST/<repo>:<tag>``."""
        self.skopeo(
            "copy", "--quiet", "--format", format, layout.skopeo_ref,
            self.docker_ref(repo, tag or layout.tag),
        )  # fmt: skip

    def push_base_image(
        self,
        repo: str,
        tag: str = "latest",
        *,
        format: Literal["oci", "v2s2"] = "oci",
        layers: Sequence[Mapping[str, bytes]] | None = None,
        architecture: str = "amd64",
        os_name: str = "linux",
    ) -> BaseImage:
        """Make a small image (see :func:`make_oci_layout`) and push it as ``repo:tag``.

        ``format="v2s2"`` makes skopeo convert it to a Docker v2 schema 2 manifest (with
        Docker media types for config and layers); ``"oci"`` pushes the OCI manifest as is.
        Returns what the registry then serves.
        """
        with tempfile.TemporaryDirectory(prefix="oci-layout-", dir=self.workdir) as tmp:
            layout = make_oci_layout(
                Path(tmp),
                tag=tag,
                layers=layers,
                architecture=architecture,
                os_name=os_name,
            )
            self.push_layout(layout, repo, tag, format=format)
        resp = self.get_manifest(repo, tag)
        manifest = resp.json()
        config_digest = manifest["config"]["digest"]
        return BaseImage(
            repo=repo,
            tag=tag,
            ref=self.image_ref(repo, tag),
            format=format,
            media_type=str(resp.headers["Content-Type"]),
            manifest_digest=sha256_digest(resp.body),
            manifest_bytes=resp.body,
            manifest=manifest,
            config_digest=config_digest,
            config=json.loads(self.get_blob(repo, config_digest)),
            layer_digests=[layer["digest"] for layer in manifest["layers"]],
            diff_ids=list(layout.diff_ids),
        )


@contextlib.contextmanager
def running_registry(
    workdir: Path, *, tls: bool = False, auth: bool = False
) -> Iterator[Registry]:
    """``with running_registry(tmp, tls=True) as reg: ...``"""
    reg = Registry(workdir, tls=tls, auth=auth)
    with reg:
        yield reg


def _main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run a test registry until Ctrl-C.")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a generated test CA")
    parser.add_argument("--auth", action="store_true", help="htpasswd auth (implies --tls)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    opts = parser.parse_args(argv)
    tls = opts.tls or opts.auth
    with contextlib.ExitStack() as stack:
        workdir = opts.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        reg = stack.enter_context(Registry(workdir, tls=tls, auth=opts.auth, port=opts.port))
        print(f"registry:    {reg.base}  (pid {reg.pid})")
        print(f"mirror URL:  {reg.repo_url('<repo>')}")
        if reg.ca_file:
            print(f"CA file:     {reg.ca_file}")
        if reg.auth:
            print(f"credentials: {reg.username} / {reg.password}")
        print(f"log:         {reg.log_file}")
        print("Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while reg.running:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
