"""Index updates against a real registry: rebuild with the stored tag map (one HEAD per
unchanged tag), merge on push (no tag listing), concurrent mergers, unusable tags.

Spec images are made directly through the engine (config = a synthetic spec config from
``index_corpus.py``, one tiny layer); the expected ``index.json`` is the engine's offline
``index_json``, which ``test_spack_index.py`` checks against Spack's own code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import spack_oci_rs as oci
from faultproxy import Fault, FaultProxy
from index_corpus import corpus
from registry import Registry, sha256_digest, skopeo
from spec_images import put_image

pytestmark = pytest.mark.usefixtures("registry_tools")

_HERE = Path(__file__).resolve().parent
_STATE = "application/vnd.spack-oci-rs.index-state.v1+json"


def current_index(ref: str) -> bytes:
    found = oci.fetch_index(ref)
    assert found is not None and found[1] is not None
    return found[1]


def installs(data: bytes) -> dict[str, dict[str, object]]:
    return json.loads(data)["database"]["installs"]  # type: ignore[no-any-return]


def spec_configs(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    return [c for c in corpus(seed=seed, count=count) if c[0].startswith("pkg-")]


def test_rebuild_cold_warm_and_changed(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    configs = spec_configs(30)
    for tag, config in configs:
        put_image(ref, tag, config)
    # Unusable tags are skipped with one reason each.
    put_image(ref, "notjson-1.0-aaaa.spack", b"{broken")
    put_image(ref, "nospec-1.0-aaaa.spack", b'{"architecture":"amd64"}')
    cold = oci.update_index(ref, targets="{}")
    assert (cold.mode, cold.fetched, cold.reused, cold.settled) == (
        "rebuild",
        len(configs),
        0,
        True,
    )
    assert sorted(t for t, _ in cold.skipped) == [
        "nospec-1.0-aaaa.spack",
        "notjson-1.0-aaaa.spack",
    ]
    expected, _ = oci.index_json(configs, targets="{}")
    assert current_index(ref) == expected
    # The index manifest keeps Spack's layout, with the state as a second layer.
    manifest, _ = oci.get_manifest_and_config(f"{ref}:index.spack", recurse=0)
    assert [layer["mediaType"] for layer in manifest["layers"]][1:] == [_STATE]

    warm = oci.update_index(ref, targets="{}")
    assert (warm.fetched, warm.reused) == (0, len(configs))
    assert current_index(ref) == expected

    # One tag moved to another spec, one new tag: only those two are fetched.
    more = spec_configs(40, seed=8)
    moved_tag = configs[0][0]
    put_image(ref, moved_tag, more[0][1])
    put_image(ref, more[1][0], more[1][1])
    after = oci.update_index(ref, targets="{}")
    assert (after.fetched, after.reused) == (2, len(configs) - 1)
    now = sorted([(moved_tag, more[0][1]), *configs[1:], more[1]])
    assert current_index(ref) == oci.index_json(now, targets="{}")[0]


def test_merge_sends_no_tag_listing(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    configs = spec_configs(30)
    base, new = configs[:-3], configs[-3:]
    for tag, config in base:
        put_image(ref, tag, config)
    oci.update_index(ref, targets="{}")
    with FaultProxy(registry.host) as proxy:
        pref = f"oci+http://{proxy.host}/{repo_name}"
        for tag, config in new:
            put_image(pref, tag, config)
        before = len(proxy.log)
        merged = oci.update_index(pref, merge=[t for t, _ in new], targets="{}")
        sent = list(proxy.log)[before:]
    assert (merged.mode, merged.settled, merged.attempts, merged.fetched) == ("merge", True, 1, 3)
    assert not [r for r in sent if "/tags/list" in r.path]
    # Nothing per tag already in the index: only the pushed tags' manifests are read.
    manifests = {r.path.rsplit("/", 1)[1] for r in sent if "/manifests/" in r.path}
    assert manifests == {"index.spack", *(t for t, _ in new)}
    assert len(sent) <= 24, [f"{r.method} {r.path}" for r in sent]
    full, _ = oci.index_json(configs, targets="{}")
    assert installs(current_index(ref)) == installs(full)


def test_merge_rebuilds_an_unreadable_or_missing_index(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    configs = spec_configs(10)
    for tag, config in configs:
        put_image(ref, tag, config)
    first = oci.update_index(ref, merge=[configs[0][0]], targets="{}")
    assert first.mode == "rebuild" and "no index" in (first.note or "")
    oci.upload_index(ref, b'{"database": "garbage"}')
    second = oci.update_index(ref, merge=[configs[1][0]], targets="{}")
    assert second.mode == "rebuild" and "cannot be read" in (second.note or "")
    assert current_index(ref) == oci.index_json(configs, targets="{}")[0]


def test_skopeo_copies_the_index_image(
    registry: Registry, repo_name: str, tmp_path: Path, skopeo_available: None
) -> None:
    ref = registry.repo_url(repo_name)
    for tag, config in spec_configs(5):
        put_image(ref, tag, config)
    oci.update_index(ref, targets="{}")
    skopeo("copy", "--src-tls-verify=false", registry.docker_ref(repo_name, "index.spack"),
           f"dir:{tmp_path / 'copy'}")  # fmt: skip
    assert len(list((tmp_path / "copy").iterdir())) >= 4  # manifest, config, 2 layers, version


_MERGER = """
import sys, time, spack_oci_rs as oci
ref, start, *tags = sys.argv[1:]
time.sleep(max(0.0, float(start) - time.time()))
r = oci.update_index(ref, merge=tags, targets="{}")
print(r.settled, r.attempts, r.mode)
"""


def test_concurrent_mergers_lose_nothing(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    configs = spec_configs(60, seed=9)
    base, rest = configs[:8], configs[8:]
    for tag, config in base:
        put_image(ref, tag, config)
    oci.update_index(ref, targets="{}")
    groups = [rest[i::8] for i in range(8)]
    for group in groups:
        for tag, config in group:
            put_image(ref, tag, config)
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MERGER, ref, str(start), *[t for t, _ in group]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group in groups
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [o[0].split() for o in outs]
    assert all(r[0] == "True" and r[2] == "merge" for r in results), results
    full, _ = oci.index_json(configs, targets="{}")
    assert installs(current_index(ref)) == installs(full), results
    print("merge attempts:", [r[1] for r in results])


def test_rebuild_skips_a_vanished_manifest_or_config(registry: Registry, repo_name: str) -> None:
    """A tag listed whose manifest is gone by the time it is read (404), and a tag whose
    config blob was deleted: each skipped with one reason naming it; an index of the rest."""
    ref = registry.repo_url(repo_name)
    configs = spec_configs(12, seed=11)
    for tag, config in configs:
        put_image(ref, tag, config)
    (gone_manifest, _), (gone_config, config) = configs[0], configs[1]
    registry.delete_blob(repo_name, sha256_digest(config))
    with FaultProxy(registry.host) as proxy:
        unknown = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        proxy.add(
            Fault.respond(404, content=unknown, content_type="application/json"),
            "GET",
            f"/manifests/{gone_manifest}$",
            times=None,
        )
        result = oci.update_index(f"oci+http://{proxy.host}/{repo_name}", targets="{}")
    assert sorted(t for t, _ in result.skipped) == sorted([gone_manifest, gone_config])
    assert all(reason for _, reason in result.skipped), result.skipped
    assert (result.mode, result.fetched, result.settled) == ("rebuild", len(configs) - 2, True)
    assert current_index(ref) == oci.index_json(configs[2:], targets="{}")[0]
