"""A pytest plugin for ``spack unit-test -p spack_unit_rust``: Spack's own unit tests with the
zero-patch plugin's dispatch active, as with ``config:oci_backend:rust`` (Spack's tests replace
the whole configuration with their mock scopes, so the toggle cannot come from a config file).
"""

from __future__ import annotations

import spack_oci_rs_plugin


def pytest_configure(config: object) -> None:
    assert spack_oci_rs_plugin.status()["mode"] == "plugin", spack_oci_rs_plugin.status()
    spack_oci_rs_plugin.toggle = lambda: "rust"  # type: ignore[assignment]
