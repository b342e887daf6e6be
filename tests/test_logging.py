"""Engine events reach Python's logging (logger ``spack_oci_rs``): requests at DEBUG with
method, URL, status and time; retries at INFO; never a credential."""

from __future__ import annotations

import logging
import socket

import pytest

import spack_oci_rs as oci
from registry import Registry


def test_requests_are_logged_without_secrets(
    auth_registry: Registry, repo_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = auth_registry
    assert reg.username and reg.password
    client = oci.Client(
        ca_certs=[str(reg.ca_file)], credentials={reg.host: (reg.username, reg.password)}
    )
    ref = reg.repo_url(repo_name)
    with caplog.at_level(logging.DEBUG, logger="spack_oci_rs"):
        oci.reset_logging()
        oci.upload_blob(ref, b"logged blob", client=client)
        oci.list_tags(ref, client=client)
    oci.reset_logging()
    records = [r for r in caplog.records if r.name.startswith("spack_oci_rs")]
    text = "\n".join(r.getMessage() for r in records)
    assert any(
        r.levelno == logging.DEBUG and r.getMessage().startswith("POST ") for r in records
    ), text
    assert f"/v2/{repo_name}/tags/list -> 404" in text  # no tags yet: 404 NAME_UNKNOWN
    assert " ms, HTTP/" in text
    assert reg.password not in text and "Basic " not in text and "Bearer " not in text


def test_retries_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    # A server that accepts and never answers: the read times out, which is retried (a
    # closed port is not: an unreachable registry is reported at once).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    ref = f"oci+http://127.0.0.1:{silent.getsockname()[1]}/nothing"
    try:
        with caplog.at_level(logging.INFO, logger="spack_oci_rs"):
            oci.reset_logging()
            with pytest.raises(oci.TransportError):
                oci.list_tags(ref, client=oci.Client(retries=2, read_timeout=0.3))
    finally:
        silent.close()
    oci.reset_logging()
    assert any("retrying in" in r.getMessage() for r in caplog.records), caplog.text
