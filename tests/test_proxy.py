"""Proxies as curl and Spack honour them: ``http_proxy``/``https_proxy``/``no_proxy`` (upper
and lower case), absolute-form requests for plain HTTP, ``CONNECT`` for https, through our
small forward proxy (forwardproxy.py). The variables are read when a ``Client`` is built:
each test sets them (for this process only) and then makes a new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import spack_oci_rs as oci
from forwardproxy import ForwardProxy
from registry import Registry

_VARS = ["http_proxy", "https_proxy", "all_proxy", "no_proxy"]


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A running proxy, with every proxy variable cleared for the test."""
    for var in _VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    with ForwardProxy() as p:
        yield p


@pytest.mark.parametrize("var", ["http_proxy", "HTTP_PROXY"])
def test_plain_http_registry_through_proxy(
    registry: Registry,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    repo_name: str,
    tmp_path: Path,
    var: str,
) -> None:
    monkeypatch.setenv(var, proxy.url)
    client = oci.Client(retries=1)
    ref = registry.repo_url(repo_name)
    digest, _ = oci.upload_blob(ref, b"through the proxy", client=client)
    oci.fetch_blob(ref, digest, tmp_path / "blob", client=client)
    assert (tmp_path / "blob").read_bytes() == b"through the proxy"
    seen = proxy.seen(host=registry.host)
    methods = {r.method for r in seen}
    assert {"HEAD", "POST", "PUT", "GET"} <= methods, seen
    assert all(r.target.startswith(f"http://{registry.host}/v2/") for r in seen), seen
    assert not proxy.seen(method="CONNECT")


@pytest.mark.parametrize("var", ["https_proxy", "HTTPS_PROXY"])
def test_tls_registry_through_connect(
    tls_registry: Registry,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    repo_name: str,
    var: str,
) -> None:
    monkeypatch.setenv(var, proxy.url)
    client = oci.Client(ca_certs=[tls_registry.ca_file], retries=1)
    assert oci.list_tags(tls_registry.repo_url(repo_name), client=client) == []
    oci.upload_blob(tls_registry.repo_url(repo_name), b"tunnelled", client=client)
    connects = proxy.seen(method="CONNECT")
    assert connects and all(r.target == tls_registry.host for r in connects), proxy.records
    assert len(proxy.records) == len(connects), "https never goes through in the clear"
    # The connection (and its tunnel) is reused.
    assert len(connects) <= 2


def test_credentials_go_through_the_tunnel(
    auth_registry: Registry, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, repo_name: str
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    client = oci.Client(
        credentials={auth_registry.host: ("spack", auth_registry.password or "")},
        ca_certs=[auth_registry.ca_file],
        retries=1,
    )
    assert oci.list_tags(auth_registry.repo_url(repo_name), client=client) == []
    assert proxy.seen(method="CONNECT")
    assert not any(r.authorization or r.proxy_authorization for r in proxy.records)


@pytest.mark.parametrize("var", ["no_proxy", "NO_PROXY"])
def test_no_proxy_bypass(
    registry: Registry,
    tls_registry: Registry,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    repo_name: str,
    var: str,
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv(var, "localhost,127.0.0.1")
    client = oci.Client(ca_certs=[tls_registry.ca_file], retries=1)
    assert oci.list_tags(registry.repo_url(repo_name), client=client) == []
    assert oci.list_tags(tls_registry.repo_url(repo_name), client=client) == []
    assert proxy.records == []


def test_proxy_down_is_a_transport_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, repo_name: str
) -> None:
    for var in _VARS:
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with ForwardProxy() as p:
        url = p.url
    monkeypatch.setenv("http_proxy", url)  # nothing listens there any more
    with pytest.raises(oci.exceptions.TransportError) as e:
        oci.list_tags(registry.repo_url(repo_name), client=oci.Client(retries=1))
    assert registry.host in str(e.value)
