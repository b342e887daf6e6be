"""TLS as Spack configures it: a private CA (``config:ssl_certs``, file or directory), the
``SSL_CERT_FILE``/``SSL_CERT_DIR`` environment variables, a wrong CA, ``verify_ssl: false``,
client certificates (mutual TLS, against docker-registry with ``http.tls.clientcas``), and
plain HTTP only for ``oci+http://``."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import spack_oci_rs as oci
from auth_fixtures import require_tools
from registry import Registry, make_certificates
from spack_oci_rs import exceptions as exc


def _tls_error(client: oci.Client, reg: Registry, repo: str) -> exc.OciError:
    with pytest.raises(exc.TransportError) as e:
        oci.list_tags(reg.repo_url(repo), client=client)
    return e.value


def test_private_ca_file_and_directory(tls_registry: Registry, repo_name: str) -> None:
    assert tls_registry.ca_file is not None
    for ca in (tls_registry.ca_file, tls_registry.ca_file.parent):
        client = oci.Client(ca_certs=[ca])
        assert oci.list_tags(tls_registry.repo_url(repo_name), client=client) == []


def test_untrusted_and_wrong_ca_fail_clearly(
    tls_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    e = _tls_error(oci.Client(retries=3), tls_registry, repo_name)
    msg = str(e)
    assert tls_registry.host in msg and "config:ssl_certs" in msg, msg
    assert "after" not in msg, "certificate errors are not retried"
    other = make_certificates(tmp_path / "other")
    e = _tls_error(oci.Client(ca_certs=[other.ca_file]), tls_registry, repo_name)
    assert "config:ssl_certs" in str(e), str(e)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(exc.InvalidArgumentError, match=r"bad\.pem"):
        oci.list_tags(tls_registry.repo_url(repo_name), client=oci.Client(ca_certs=[bad]))


def test_verify_ssl_false(tls_registry: Registry, repo_name: str) -> None:
    client = oci.Client(verify_ssl=False)
    assert oci.list_tags(tls_registry.repo_url(repo_name), client=client) == []
    assert "verify_ssl=false" in repr(client).lower()


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_ssl_cert_env(
    tls_registry: Registry, repo_name: str, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    assert tls_registry.ca_file is not None
    path = tls_registry.ca_file if var == "SSL_CERT_FILE" else tls_registry.ca_file.parent
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv(var, str(path))
    # Read when the client is built: a new Client sees the variable.
    assert oci.list_tags(tls_registry.repo_url(repo_name), client=oci.Client()) == []


def test_plain_http_only_for_oci_http(registry: Registry, repo_name: str) -> None:
    assert oci.list_tags(registry.repo_url(repo_name)) == []  # oci+http://
    with pytest.raises(exc.TransportError) as e:
        oci.list_tags(f"oci://{registry.host}/{repo_name}", client=oci.Client(retries=1))
    assert "oci+http://" in str(e.value), str(e.value)


# -- mutual TLS -----------------------------------------------------------------------------------


@dataclass(eq=False)
class MtlsRegistry(Registry):
    """docker-registry that requires a client certificate signed by ``client_ca``."""

    client_ca: Path | None = None
    client_cert: Path | None = None  #: certificate + key (PEM) for the fixture's own requests

    def _config(self) -> str:
        assert self.client_ca is not None
        text = super()._config()
        key_line = next(line for line in text.splitlines() if line.startswith("    key: "))
        return text.replace(
            key_line + "\n",
            key_line + f"\n    clientcas:\n      - {json.dumps(str(self.client_ca))}\n",
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        ctx = super().ssl_context()
        if ctx is not None and self.client_cert is not None:
            ctx.load_cert_chain(self.client_cert)
        return ctx


@dataclass
class ClientCert:
    cert: Path
    key: Path
    both: Path


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MtlsRegistry, ClientCert]]:
    require_tools()
    work = tmp_path_factory.mktemp("mtls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "client-ca.pem"))
    leaf = ca.issue_cert("spack-client@example.org")
    cert, key, both = work / "client.crt", work / "client.key", work / "client.pem"
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(both))
    reg = MtlsRegistry(
        work / "registry", tls=True, client_ca=work / "client-ca.pem", client_cert=both
    )
    with reg:
        yield reg, ClientCert(cert, key, both)


def test_client_certificate(
    mtls: tuple[MtlsRegistry, ClientCert], new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    reg, cc = mtls
    repo = new_repo("mtls")
    client = oci.Client(ca_certs=[reg.ca_file], client_cert=cc.cert, client_key=cc.key)
    digest, _ = oci.upload_blob(reg.repo_url(repo), b"over mutual TLS", client=client)
    # Certificate and key in one file.
    client = oci.Client(ca_certs=[reg.ca_file], client_cert=cc.both)
    oci.fetch_blob(reg.repo_url(repo), digest, tmp_path / "blob", client=client)
    assert (tmp_path / "blob").read_bytes() == b"over mutual TLS"


def test_client_certificate_missing_or_unusable(
    mtls: tuple[MtlsRegistry, ClientCert], repo_name: str, tmp_path: Path
) -> None:
    reg, cc = mtls
    with pytest.raises(exc.TransportError) as e:
        oci.list_tags(
            reg.repo_url(repo_name), client=oci.Client(ca_certs=[reg.ca_file], retries=1)
        )
    assert reg.host in str(e.value) and "client_cert" in str(e.value), str(e.value)
    # A certificate from a CA the registry does not trust.
    other = trustme.CA().issue_cert("stranger@example.org")
    stranger = tmp_path / "stranger.pem"
    other.private_key_and_cert_chain_pem.write_to_path(str(stranger))
    with pytest.raises(exc.TransportError) as e:
        oci.list_tags(
            reg.repo_url(repo_name),
            client=oci.Client(ca_certs=[reg.ca_file], client_cert=stranger, retries=1),
        )
    assert "stranger.pem" in str(e.value) or "closed" in str(e.value), str(e.value)
    # A certificate without its key, a key without a certificate: named, at first use.
    with pytest.raises(exc.InvalidArgumentError, match=r"client\.crt"):
        oci.list_tags(
            reg.repo_url(repo_name), client=oci.Client(ca_certs=[reg.ca_file], client_cert=cc.cert)
        )
    with pytest.raises(exc.InvalidArgumentError, match="without a client certificate"):
        oci.list_tags(
            reg.repo_url(repo_name), client=oci.Client(ca_certs=[reg.ca_file], client_key=cc.key)
        )
    # The key's bytes never show up in errors.
    key_text = cc.key.read_text()
    junk = tmp_path / "junk.pem"
    junk.write_text(key_text.replace("PRIVATE KEY", "PRIVATE KEZ"))
    with pytest.raises(exc.InvalidArgumentError) as e2:
        oci.list_tags(
            reg.repo_url(repo_name),
            client=oci.Client(ca_certs=[reg.ca_file], client_cert=cc.cert, client_key=junk),
        )
    body = "".join(key_text.splitlines()[1:-1])
    assert body[:20] not in str(e2.value)
