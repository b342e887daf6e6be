"""Authentication against real servers: the CNCF distribution server with token auth served
by our token server (tokenserver.py), with htpasswd Basic auth, static access tokens, Docker
login files and credential helpers, redirects to blob storage, and the errors a user sees.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from auth_fixtures import (
    assert_no_secret,
    auth_field,
    blob_files,
    docker_config,
    fake_helper,
    push_image,
    require_tools,
)
from redirectfront import BlobStore, RedirectFront
from registry import Registry
from spack_oci_rs import exceptions as exc
from tokenserver import TokenRegistry, TokenServer, running

ALICE_PW = "alice-Pa55-secret"
BOB_PW = "bob-Pa55-secret"
REFRESH = "refresh-token-of-alice-secret"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """HTTPS registry with token auth. alice: pull+push on everything; bob: pull on
    ``shared/*`` only; anonymous: pull on ``public/*``; identity token REFRESH is alice's."""
    require_tools()
    yield from running(
        tmp_path_factory.mktemp("token-registry"),
        users={"alice": ALICE_PW, "bob": BOB_PW},
        acl={"alice": {"*": ["pull", "push"]}, "bob": {"shared/*": ["pull"]}},
        public=["public/*"],
        refresh_tokens={REFRESH: "alice"},
    )


@pytest.fixture
def ts(token_registry: TokenRegistry) -> Iterator[TokenServer]:
    """The token server, counts reset, knobs restored after the test."""
    server = token_registry.token_server
    assert server is not None
    saved = (server.expires_in, server.token_field, server.fail_status, server.bad_tokens)
    server.reset()
    yield server
    server.expires_in, server.token_field, server.fail_status, server.bad_tokens = saved


def client_for(
    reg: Registry, user: str | None = None, password: str = "", **kw: Any
) -> oci.Client:
    creds = {reg.host: (user, password)} if user else {}
    kw.setdefault("retries", 1)
    return oci.Client(credentials=creds, ca_certs=[reg.ca_file] if reg.ca_file else None, **kw)


def alice(reg: Registry, **kw: Any) -> oci.Client:
    return client_for(reg, "alice", ALICE_PW, **kw)


# -- the token flow -------------------------------------------------------------------------------


def test_token_flow_push_and_pull(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    repo = new_repo("img")
    ref = token_registry.repo_url(repo) + ":v1"
    client = alice(token_registry)
    digests = push_image(ref, tmp_path, client)
    manifest, _ = oci.get_manifest_and_config(ref, client=client)
    assert manifest["config"]["digest"] == digests[0]
    for d in digests:
        oci.fetch_blob(ref, d, tmp_path / d.replace(":", "_"), client=client)
    reqs = ts.requests
    assert reqs, "the token server was asked"
    for r in reqs:
        assert r.method == "GET"
        assert r.user == "alice", "Basic credentials went to the realm"
        assert r.service == "spack-oci-rs-test-registry"
        assert r.client_id == "spack"
    # Tokens are cached per scope: one request per scope set, whatever the number of blobs.
    counts = ts.scope_counts()
    assert all(n == 1 for n in counts.values()), counts
    assert (f"repository:{repo}:pull,push",) in counts
    # The registry holds what we pushed.
    assert token_registry.blob_exists(repo, digests[1])


def test_tokens_reused_per_scope_not_per_blob(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    repo = new_repo("many")
    ref = token_registry.repo_url(repo)
    client = alice(token_registry)
    blobs = blob_files(tmp_path / "in", 12)
    for path, digest in blobs:
        oci.upload_blob(ref, path, digest, client=client)
    after_push = ts.count()
    (tmp_path / "out").mkdir()
    results = oci.fetch_blobs(
        [(ref, d, tmp_path / "out" / d[7:]) for _, d in blobs], client=client
    )
    assert all(r.ok for r in results)
    for _, d in blobs[:3]:
        assert oci.blob_exists(ref, d, client=client)
    assert after_push <= 2, ts.scope_counts()
    assert ts.count() == after_push, "downloads reuse the cached tokens"
    # Another repository is another scope: one more token.
    other = token_registry.repo_url(new_repo("other"))
    oci.upload_blob(other, blobs[0][0], blobs[0][1], client=client)
    assert ts.count() in (after_push + 1, after_push + 2)


def test_concurrent_uploads_fetch_one_token_per_scope(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    """N uploads at once, starting cold: every one gets 401, but each scope's token is
    fetched exactly once and shared."""
    repo = new_repo("burst")
    ref = token_registry.repo_url(repo)
    client = alice(token_registry, max_concurrency=32)
    blobs = blob_files(tmp_path, 24)
    ts.delay = 0.2  # keep the first fetch in flight while the others pile up
    try:
        with concurrent.futures.ThreadPoolExecutor(len(blobs)) as pool:
            results = list(
                pool.map(lambda b: oci.upload_blob(ref, b[0], b[1], client=client), blobs)
            )
    finally:
        ts.delay = 0.0
    assert all(uploaded for _, uploaded in results)
    counts = ts.scope_counts()
    assert counts[(f"repository:{repo}:pull,push",)] == 1, counts
    assert all(n == 1 for n in counts.values()), counts


def test_rejected_token_refreshed_once_for_all(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    """The registry rejects the first token (expired): concurrent requests refresh it once
    between them; a token that keeps being rejected fails after one refresh, no loop."""
    repo = new_repo("refresh")
    ref = token_registry.repo_url(repo)
    blobs = blob_files(tmp_path / "in", 8)
    for path, digest in blobs:
        oci.upload_blob(ref, path, digest, client=alice(token_registry))
    client = alice(token_registry)
    # Learn that the registry uses tokens (with another repository's scope).
    oci.list_tags(token_registry.repo_url(new_repo("warm")), client=client)
    ts.reset()
    ts.bad_tokens = 1
    (tmp_path / "out").mkdir()
    results = oci.fetch_blobs(
        [(ref, d, tmp_path / "out" / d[7:]) for _, d in blobs], client=client
    )
    assert all(r.ok for r in results), [str(r.error) for r in results if not r.ok]
    assert ts.scope_counts() == {(f"repository:{repo}:pull",): 2}, ts.scope_counts()

    ts.reset()
    ts.bad_tokens = 100
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(token_registry.repo_url(new_repo("bad")), client=client)
    assert ts.count() == 2, "one refresh after the 401, then give up"
    assert "rejected" in str(e.value)
    assert_no_secret(e.value, [ALICE_PW])


def test_expires_in_is_honoured(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str]
) -> None:
    ref = token_registry.repo_url(new_repo("exp"))
    ts.expires_in = 2
    client = alice(token_registry)
    oci.list_tags(ref, client=client)
    oci.list_tags(ref, client=client)
    assert ts.count() == 1
    time.sleep(1.7)  # refreshed a quarter of its life early: after 1.5 s
    oci.list_tags(ref, client=client)
    assert ts.count() == 2


@pytest.mark.parametrize("field", ["access_token", "both"])
def test_oauth2_access_token_answers(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], field: str
) -> None:
    ts.token_field = field
    assert (
        oci.list_tags(token_registry.repo_url(new_repo("o")), client=alice(token_registry)) == []
    )


def test_cross_repository_mount_asks_for_both_scopes(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    src, dst = new_repo("base"), new_repo("cache")
    client = alice(token_registry)
    digests = push_image(token_registry.repo_url(src) + ":1", tmp_path, client)
    ts.reset()
    oci.copy_missing_layers(
        token_registry.repo_url(src) + ":1", token_registry.repo_url(dst), client=client
    )
    both = (f"repository:{dst}:pull,push", f"repository:{src}:pull")
    assert ts.scope_counts()[both] == 1, ts.scope_counts()
    granted = next(r.granted for r in ts.requests if r.scopes == both)
    assert dict(granted) == {dst: ("pull", "push"), src: ("pull",)}
    assert token_registry.blob_exists(dst, digests[1]), "mounted"
    # bob may pull shared/* but push nowhere: a mount into his repository is denied.


def test_anonymous_pull_where_allowed(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    repo = "public/" + new_repo("p")
    ref = token_registry.repo_url(repo)
    digests = push_image(ref + ":latest", tmp_path / "img", alice(token_registry))
    anon = client_for(token_registry)
    oci.fetch_blob(ref, digests[1], tmp_path / "layer", client=anon)
    assert ts.requests[-1].user is None
    with pytest.raises(exc.AuthenticationError) as e:
        oci.upload_blob(ref, b"anonymous push", client=anon)
    msg = str(e.value)
    assert token_registry.host in msg and repo in msg, msg
    assert "spack mirror set --oci-username-variable" in msg, msg
    # A private repository: the same, for pulls.
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(token_registry.repo_url(new_repo("private")), client=anon)
    assert "none are configured" in str(e.value)


def test_wrong_password(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str]
) -> None:
    repo = new_repo("wrong")
    client = client_for(token_registry, "alice", "not-" + ALICE_PW)
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(token_registry.repo_url(repo), client=client)
    msg = str(e.value)
    assert "rejected" in msg and '"alice"' in msg and repo in msg, msg
    assert token_registry.host in msg and "token server" in msg, msg
    assert "--oci-password-variable" in msg, msg
    assert_no_secret(e.value, ["not-" + ALICE_PW, ALICE_PW])
    assert ALICE_PW not in repr(client)


def test_scope_denied(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    repo = "shared/" + new_repo("s")
    ref = token_registry.repo_url(repo)
    digests = push_image(ref + ":latest", tmp_path, alice(token_registry))
    bob = client_for(token_registry, "bob", BOB_PW)
    oci.fetch_blob(ref, digests[1], tmp_path / "ok", client=bob)
    with pytest.raises(exc.AuthenticationError) as e:
        oci.upload_blob(ref, b"bob was here", client=bob)
    msg = str(e.value)
    assert "scope denied" in msg and f"push access to `{repo}`" in msg and '"bob"' in msg, msg
    assert_no_secret(e.value, [BOB_PW])


def test_token_server_errors(tmp_path: Path, new_repo: Callable[[str], str]) -> None:
    require_tools()
    for reg in running(tmp_path, users={"alice": ALICE_PW}, acl={"alice": {"*": ["pull"]}}):
        ts = reg.token_server
        assert ts is not None
        ref = reg.repo_url(new_repo("down"))
        ts.fail_status = 503
        with pytest.raises(exc.OciError) as e:
            oci.list_tags(ref, client=alice(reg))
        assert "token server answered 503" in str(e.value) and reg.host in str(e.value)
        ts.stop()
        start = time.monotonic()
        with pytest.raises(exc.TransportError) as e:
            oci.list_tags(ref, client=alice(reg))
        msg = str(e.value)
        assert reg.host in msg and "token" in msg and "reachable" in msg, msg
        assert_no_secret(e.value, [ALICE_PW])
        assert time.monotonic() - start < 10


# -- Basic auth (htpasswd) ------------------------------------------------------------------------


def test_basic_auth_errors(auth_registry: Registry, new_repo: Callable[[str], str]) -> None:
    ref = auth_registry.repo_url(new_repo("b"))
    assert (
        oci.list_tags(ref, client=client_for(auth_registry, "spack", auth_registry.password or ""))
        == []
    )
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(ref, client=client_for(auth_registry))
    assert "none are configured" in str(e.value) and auth_registry.host in str(e.value)
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(ref, client=client_for(auth_registry, "spack", "wrong-pw-secret"))
    assert "rejected" in str(e.value)
    assert_no_secret(e.value, ["wrong-pw-secret", auth_registry.password or "?"])


# -- static access tokens -------------------------------------------------------------------------


def test_static_access_token(
    token_registry: TokenRegistry, ts: TokenServer, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    """A mirror's ``access_token`` goes to the registry as ``Bearer`` as it is."""
    repo = new_repo("tok")
    assert token_registry.token_server is not None
    token = token_registry.token_server.mint({repo: ["pull", "push"]}, subject="ci")
    client = oci.Client(
        access_tokens={token_registry.host: token}, ca_certs=[token_registry.ca_file]
    )
    ref = token_registry.repo_url(repo)
    digests = push_image(ref + ":t", tmp_path, client)
    oci.fetch_blob(ref, digests[1], tmp_path / "back", client=client)
    assert ts.count() == 0, "a static token is never exchanged"
    assert "access token" in client.credentials_source(token_registry.host)
    # The token does not grant another repository: a clear error, without the token.
    with pytest.raises(exc.AuthenticationError) as e:
        oci.list_tags(token_registry.repo_url(new_repo("other")), client=client)
    msg = str(e.value)
    assert "access token" in msg and "--oci-password-variable" in msg, msg
    assert_no_secret(e.value, [token])
    assert token not in repr(client)
    # A username/password for the same registry wins over the token (as in Spack).
    both = oci.Client(
        credentials={token_registry.host: ("alice", ALICE_PW)},
        access_tokens={token_registry.host: "garbage"},
        ca_certs=[token_registry.ca_file],
    )
    assert oci.list_tags(ref, client=both) == ["t"]
    with pytest.raises(ValueError):
        oci.Client(access_tokens={"x": "has space"})


# -- Docker and podman login files, credential helpers --------------------------------------------


def test_docker_config_auths(
    token_registry: TokenRegistry,
    ts: TokenServer,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    cfg = docker_config(
        tmp_path / "docker" / "config.json",
        {"auths": {f"https://{host}": {"auth": auth_field("alice", ALICE_PW)}}},
    )
    ref = token_registry.repo_url(new_repo("dc"))
    # Off by default: the file is not read.
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg.parent))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(exc.AuthenticationError):
        oci.upload_blob(ref, b"x", client=client_for(token_registry))
    # docker_config=True: $DOCKER_CONFIG/config.json.
    client = oci.Client(docker_config=True, ca_certs=[token_registry.ca_file])
    oci.upload_blob(ref, b"from docker config", client=client)
    src = client.credentials_source(host)
    assert '"alice"' in src and str(cfg) in src and ALICE_PW not in src, src
    assert ts.requests[-1].user == "alice"
    # An explicit path; explicit credentials come first.
    client = oci.Client(
        docker_config=cfg,
        credentials={host: ("bob", BOB_PW)},
        ca_certs=[token_registry.ca_file],
    )
    assert '"bob"' in client.credentials_source(host)
    assert "none" in client.credentials_source("elsewhere.example")
    # podman: $REGISTRY_AUTH_FILE first.
    podman = docker_config(
        tmp_path / "auth.json", {"auths": {host: {"username": "bob", "password": BOB_PW}}}
    )
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    client = oci.Client(docker_config=True, ca_certs=[token_registry.ca_file])
    assert str(podman) in client.credentials_source(host)


def test_docker_identity_token(
    token_registry: TokenRegistry,
    ts: TokenServer,
    new_repo: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """``identitytoken`` (what ``az acr login`` stores): the OAuth2 refresh-token POST."""
    cfg = docker_config(
        tmp_path / "config.json",
        {
            "auths": {
                token_registry.host: {
                    "auth": auth_field("00000000-0000-0000-0000-000000000000", ""),
                    "identitytoken": REFRESH,
                }
            }
        },
    )
    client = oci.Client(docker_config=cfg, ca_certs=[token_registry.ca_file])
    repo = new_repo("idt")
    oci.upload_blob(token_registry.repo_url(repo), b"identity", client=client)
    posts = [r for r in ts.requests if r.method == "POST"]
    assert posts and all(r.grant_type == "refresh_token" for r in posts)
    assert posts[-1].user == "alice" and posts[-1].client_id == "spack"
    assert f"repository:{repo}:pull,push" in posts[-1].scopes
    assert "identity token" in client.credentials_source(token_registry.host)


def test_docker_credential_helpers(
    token_registry: TokenRegistry,
    ts: TokenServer,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = token_registry.host
    bindir, log = tmp_path / "bin", tmp_path / "helper.log"
    fake_helper(bindir, "spacktest", {host: ("alice", ALICE_PW)}, log)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    # credHelpers: this registry's helper.
    cfg = docker_config(tmp_path / "a" / "config.json", {"credHelpers": {host: "spacktest"}})
    client = oci.Client(docker_config=cfg, ca_certs=[token_registry.ca_file])
    repo = new_repo("helper")
    for i in range(3):
        oci.upload_blob(token_registry.repo_url(repo), f"helper {i}".encode(), client=client)
    oci.list_tags(token_registry.repo_url(repo), client=client)
    assert log.read_text().split() == [host], "asked once, with the server on stdin"
    assert "docker-credential-spacktest" in client.credentials_source(host)
    assert ts.requests[-1].user == "alice"
    # credsStore: the default store; a registry it does not know stays anonymous.
    cfg = docker_config(tmp_path / "b" / "config.json", {"credsStore": "spacktest", "auths": {}})
    client = oci.Client(docker_config=cfg, ca_certs=[token_registry.ca_file])
    oci.upload_blob(token_registry.repo_url(repo), b"store", client=client)
    assert "credsStore" in client.credentials_source(host)
    assert client.credentials_source("unknown.example").startswith("none")
    # A helper that is missing: named in the source and in the login error.
    cfg = docker_config(tmp_path / "c" / "config.json", {"credHelpers": {host: "missing-one"}})
    client = oci.Client(docker_config=cfg, ca_certs=[token_registry.ca_file], retries=1)
    assert "docker-credential-missing-one" in client.credentials_source(host)
    with pytest.raises(exc.AuthenticationError):
        oci.upload_blob(token_registry.repo_url(repo), b"no helper", client=client)


# -- the token realm's scheme ---------------------------------------------------------------------


class _Challenger(http.server.BaseHTTPRequestHandler):
    """Answers everything with 401 and a Bearer challenge whose realm is plain http."""

    protocol_version = "HTTP/1.1"
    realm = "http://127.0.0.1:9/token"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.realm}",service="x"')
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_insecure_realm_refused_for_https_registry(
    tls_registry: Registry, new_repo: Callable[[str], str]
) -> None:
    assert tls_registry.certs is not None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Challenger)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_registry.certs.cert_file, tls_registry.certs.key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = oci.Client(credentials={host: ("u", "p-secret")}, ca_certs=[tls_registry.ca_file])
        with pytest.raises(exc.AuthenticationError) as e:
            oci.list_tags(f"oci://{host}/{new_repo('r')}", client=client)
        assert "insecure realm" in str(e.value) and host in str(e.value)
    finally:
        server.shutdown()
        server.server_close()


def test_http_registry_with_loopback_http_realm(
    tmp_path: Path, new_repo: Callable[[str], str]
) -> None:
    """``oci+http://`` on loopback may use a plain-http token realm on loopback."""
    require_tools()
    for reg in running(
        tmp_path, tls=False, users={"alice": ALICE_PW}, acl={"alice": {"*": ["pull", "push"]}}
    ):
        assert reg.url.startswith("oci+http://")
        assert reg.token_server is not None and reg.token_server.realm.startswith("http://")
        ref = reg.repo_url(new_repo("h"))
        oci.upload_blob(ref, b"plain", client=client_for(reg, "alice", ALICE_PW))
        assert reg.token_server.count(user="alice") >= 1


# -- redirects to blob storage --------------------------------------------------------------------


@pytest.fixture
def front(auth_registry: Registry) -> Iterator[RedirectFront]:
    store = BlobStore(certs=auth_registry.certs).start()
    f = RedirectFront(auth_registry, store, certs=auth_registry.certs).start()
    try:
        yield f
    finally:
        f.stop()
        store.stop()


def _front_client(front: RedirectFront) -> oci.Client:
    up = front.upstream
    return oci.Client(
        credentials={front.host: (up.username or "", up.password or "")},
        ca_certs=[up.ca_file],
        retries=1,
    )


@pytest.mark.parametrize("status", [307, 302, 301, 308])
def test_redirect_to_other_host_drops_authorization(
    front: RedirectFront, new_repo: Callable[[str], str], tmp_path: Path, status: int
) -> None:
    front.status = status
    repo = new_repo("redir")
    client = _front_client(front)
    data = b"blob behind a redirect " * 100
    digest, _ = oci.upload_blob(f"{front.url}/{repo}", data, client=client)
    size = oci.fetch_blob(f"{front.url}/{repo}", digest, tmp_path / "out", client=client)
    assert size == len(data) and (tmp_path / "out").read_bytes() == data
    assert [s.method for s in front.redirected] == ["GET"]
    assert front.redirected[0].authorization, "the registry itself got the credentials"
    gets = [s for s in front.store.seen if s.method == "GET"]
    assert gets and not any(s.authorization for s in front.store.seen), front.store.seen


@pytest.mark.parametrize("status", [307, 303, 302])
def test_redirected_head_stays_head(
    front: RedirectFront, new_repo: Callable[[str], str], status: int
) -> None:
    front.status = status
    repo = new_repo("head")
    client = _front_client(front)
    digest, _ = oci.upload_blob(f"{front.url}/{repo}", b"head me", client=client)
    front.store.seen.clear()
    front.redirected.clear()
    assert oci.blob_exists(f"{front.url}/{repo}", digest, client=client)
    assert [s.method for s in front.redirected if s.path.endswith(digest)] == ["HEAD"]
    assert [s.method for s in front.store.seen] == ["HEAD"]
    assert not front.store.seen[0].authorization


def test_relative_redirect(
    front: RedirectFront, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    front.relative = True
    repo = new_repo("rel")
    client = _front_client(front)
    data = b"relative location"
    digest, _ = oci.upload_blob(f"{front.url}/{repo}", data, client=client)
    oci.fetch_blob(f"{front.url}/{repo}", digest, tmp_path / "out", client=client)
    assert (tmp_path / "out").read_bytes() == data
    assert [s.method for s in front.local] == ["GET"]


def test_redirect_from_https_to_http_refused(
    auth_registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    store = BlobStore(certs=None).start()
    front = RedirectFront(auth_registry, store, certs=auth_registry.certs).start()
    try:
        client = _front_client(front)
        repo = new_repo("down")
        digest, _ = oci.upload_blob(f"{front.url}/{repo}", b"no downgrade", client=client)
        with pytest.raises(exc.OciError) as e:
            oci.fetch_blob(f"{front.url}/{repo}", digest, tmp_path / "out", client=client)
        assert "redirect from https" in str(e.value), str(e.value)
        assert store.seen == [], "nothing went to the plain-http server"
        assert not (tmp_path / "out").exists()
    finally:
        front.stop()
        store.stop()


def test_doctor_names_the_credentials_source(
    token_registry: TokenRegistry,
    ts: TokenServer,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spack_oci_rs import cli

    cfg = docker_config(
        tmp_path / "config.json",
        {"auths": {token_registry.host: {"auth": auth_field("alice", ALICE_PW)}}},
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    ref = token_registry.repo_url(new_repo("doc"))
    rc = cli.main(
        ["doctor", "--json", "--docker-config", "--ca-cert", str(token_registry.ca_file), ref]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    data = json.loads(out)
    assert str(cfg) in data["credentials"] and '"alice"' in data["credentials"], data
    assert data["push"]["ok"], data
    assert ALICE_PW not in out


def test_doctor_explains_failures_in_one_line(
    token_registry: TokenRegistry,
    ts: TokenServer,
    new_repo: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`doctor` on a wrong password, a missing push scope and an untrusted certificate: each
    explained in one line, never with the secret."""
    from spack_oci_rs import cli

    ca = ["--ca-cert", str(token_registry.ca_file)]
    ref = token_registry.repo_url("shared/" + new_repo("doc"))

    monkeypatch.setenv("PW", "not-alice-password")
    rc = cli.main(["doctor", *ca, "--username", "alice", "--password-env", "PW", ref])
    out, err = capsys.readouterr()
    assert rc == 1
    errors = err.strip().splitlines()
    assert len(errors) == 1 and "wrong username or password" in errors[0], err
    assert "not-alice-password" not in out + err

    monkeypatch.setenv("PW", BOB_PW)
    rc = cli.main(["doctor", *ca, "--username", "bob", "--password-env", "PW", ref])
    out, err = capsys.readouterr()
    assert rc == 0, err
    push_line = next(line for line in out.splitlines() if line.startswith("push"))
    assert "scope denied" in push_line and "push access" in push_line, out
    assert BOB_PW not in out + err

    rc = cli.main(["doctor", ref])
    out, err = capsys.readouterr()
    assert rc == 1
    errors = err.strip().splitlines()
    assert len(errors) == 1 and "ssl_certs" in errors[0], err
