"""Spack on the Rust engine under registry faults (issue 15), end to end: ``spack buildcache
push --update-index``, ``update-index`` and ``install --cache-only`` through tests/faultproxy.py
in front of the real registry, for each fault mode: (a) the first request to every URL answered
429 ``Retry-After: 1`` or 503, (b) a token-bucket limit of 4 requests/s, (c) a reset in the
middle of a streamed PATCH body, (d) a lost reply after the registry stored the blob, (e) PATCH
answered 204. The layers pushed are byte-identical to a fault-free push of the same tree, and
the installed prefixes are. Runs on an ``oci+http://``-capable Spack (the proxy is plain
HTTP). The proxy's request and throttle counts are printed (``pytest -s``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultproxy import Fault, FaultProxy
from registry import Registry
from spack_env import ROOT, SpackEnv, require_spack
from spack_oci_rs import patch
from test_spack_harness import check_installed

_SPACK_ROOT = require_spack(__file__)
if patch.spack_version(_SPACK_ROOT).startswith("1.0."):
    pytest.skip("Spack 1.0 has no oci+http:// mirrors", allow_module_level=True)

#: The leaf's data: one file above the engine's in-memory limit, so its layer is streamed.
LEAF_SIZES = (9 * 1024 * 1024, 4096)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpackEnv]:
    """One Spack environment with the three test packages installed, shared by the modes."""
    root = tmp_path_factory.mktemp("spack-faults")
    env = SpackEnv.create(root / "spack", leaf_data_sizes=LEAF_SIZES)
    env.run("config", "add", "config:oci_backend:rust")
    env.install(ROOT)
    yield env


@pytest.fixture(scope="module")
def reference(built: SpackEnv, registry: Registry) -> dict[str, str]:
    """Tag -> layer digest of a fault-free push of the same installs."""
    repo = "spack-faults-reference"
    built.mirror_add("reference", registry.repo_url(repo))
    built.push("reference", ROOT)
    built.mirror_remove("reference")
    return _layers(registry, repo)


def _layers(registry: Registry, repo: str) -> dict[str, str]:
    return {
        tag: registry.get_manifest(repo, tag).json()["layers"][-1]["digest"]
        for tag in registry.list_tags(repo)
        if tag.endswith(".spack") and tag != "index.spack"
    }


MODES: dict[str, Callable[[Callable[..., FaultProxy]], FaultProxy]] = {
    "first-429": lambda make: make(first_per_url=429),
    "first-503": lambda make: make(first_per_url=503),
    "rate-4": lambda make: make(rate_limit=4),
    "reset-patch": lambda make: _scripted(make(), Fault.reset_body(after=1_000_000), "PATCH"),
    "lost-put": lambda make: _scripted(make(), Fault.lost(), "PUT"),
    "patch-204": lambda make: make(patch_status=204),
}


def _scripted(proxy: FaultProxy, fault: Fault, method: str) -> FaultProxy:
    proxy.add(fault, method, r"/blobs/uploads/.", times=2)
    return proxy


@pytest.mark.parametrize("mode", list(MODES))
def test_push_index_install_under_faults(
    mode: str,
    built: SpackEnv,
    registry: Registry,
    reference: dict[str, str],
    make_proxy: Callable[..., FaultProxy],
    tmp_path: Path,
) -> None:
    proxy = MODES[mode](make_proxy)
    repo = f"spack-faults-{mode}"
    env = built
    env.mirror_add("faulty", proxy.repo_url(repo))
    try:
        push = env.push("faulty", ROOT, update_index=True)
        assert _layers(registry, repo) == reference, push.stdout + push.stderr
        env.update_index("faulty")
        index = _index(registry, repo)
        assert len(index["database"]["installs"]) == 3
        other = SpackEnv.create(tmp_path / "other", repo_from=env)
        other.run("config", "add", "config:oci_backend:rust")
        other.mirror_add("faulty", proxy.repo_url(repo))
        other.install(ROOT, cache_only=True)
        assert check_installed(other).keys() == check_installed(env).keys()
    finally:
        env.mirror_remove("faulty", check=False)
    print(
        f"\n[{mode}] push, update-index, install through Spack: {proxy.requests} requests, "
        f"{proxy.throttled} throttled by the proxy"
    )


def _index(registry: Registry, repo: str) -> dict[str, Any]:
    digest = registry.get_manifest(repo, "index.spack").json()["layers"][0]["digest"]
    data: dict[str, Any] = json.loads(registry.get_blob(repo, digest))
    return data
