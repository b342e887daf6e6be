"""The index database against Spack's own code, and index updates through Spack.

Byte identity: for a corpus of synthetic configs (``index_corpus.py``), the ``index.json``
written by the engine equals what Spack's ``BuildCacheDatabase`` writes (the loop of
``_oci_update_index``) on each supported Spack tree, and so does a merge of the second half
into the index of the first half. Spack's Python runs by importing its ``lib/spack`` (no
clingo, no concretization).

Trees: ``$SPACK_OCI_RS_SPACK_TREES`` (``:``-separated roots), else the three tarballs of
``../shared/spack`` extracted (``lib/spack`` only) into a temp dir once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_corpus import corpus

_HERE = Path(__file__).resolve().parent
_SHARED = _HERE.parent.parent / "shared" / "spack"
_VERSIONS = ("v1.0.2", "v1.1.0", "develop")


def _extract_lib(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tf:
        top = tf.getmembers()[0].name.split("/")[0]
        members = [m for m in tf.getmembers() if m.name.startswith(f"{top}/lib/spack/")]
        tf.extractall(dest, members=members, filter="data")
    return dest / top


@pytest.fixture(scope="session")
def spack_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    given = os.environ.get("SPACK_OCI_RS_SPACK_TREES", "").strip()
    if given:
        roots = [Path(p) for p in given.split(":") if p]
        return {r.name: r for r in roots}
    tarballs = [_SHARED / f"spack-{v}.tar.xz" for v in _VERSIONS]
    missing = [str(t) for t in tarballs if not t.is_file()]
    if missing:
        pytest.skip(f"no Spack trees: set SPACK_OCI_RS_SPACK_TREES or provide {missing}")
    dest = tmp_path_factory.mktemp("spack-lib")
    return {t.name.removesuffix(".tar.xz"): _extract_lib(t, dest) for t in tarballs}


def _oracle(tree: Path, configs: list[tuple[str, bytes]], split: int, tmp: Path) -> dict:
    data = {"configs": [[t, c.decode()] for t, c in configs], "split": split}
    path = tmp / "configs.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(_HERE / "index_oracle.py"), str(tree), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def _first_difference(a: bytes, b: bytes) -> str:
    i = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return f"at byte {i}:\n spack: {a[i - 200 : i + 200]!r}\n ours:  {b[i - 200 : i + 200]!r}"


@pytest.mark.parametrize("version", _VERSIONS)
def test_index_json_is_spacks(version: str, spack_trees: dict[str, Path], tmp_path: Path) -> None:
    tree = next((p for name, p in spack_trees.items() if name.endswith(version)), None)
    if tree is None:
        pytest.skip(f"no Spack {version} among {sorted(spack_trees)}")
    configs = corpus(seed=18, count=80)
    out = _oracle(tree, configs, len(configs) // 2, tmp_path)
    python, rust, merged = (bytes.fromhex(out[k]) for k in ("python", "rust", "merged"))
    installs = json.loads(python)["database"]["installs"]
    assert len(installs) > len(configs), "the corpus should bring dependency-only records"
    assert rust == python, _first_difference(python, rust)
    assert merged == python, _first_difference(python, merged)
    assert out["skipped"] == []
    # Without Spack's reader only the old-format spec is left out, with its reason.
    (tag, reason), *rest = out["skipped_without_spack"]
    assert not rest and tag.startswith("old-root-") and "format 4" in reason


def test_unusable_configs_are_skipped_and_a_bad_previous_index_refused() -> None:
    import spack_oci_rs as oci

    good = [c for c in corpus(seed=3, count=5) if c[0].startswith("pkg-")][:1]
    configs = [
        ("notjson.spack", b"{nope"),
        ("nospec.spack", b'{"architecture":"amd64"}'),
        ("dangling.spack", b'{"spec":{"_meta":{"version":5},"nodes":[{"name":"a","hash":"x",'
         b'"dependencies":[{"name":"b","hash":"y","parameters":{"deptypes":[],"virtuals":[]}}],'
         b'"annotations":{"original_specfile_version":5}}]}}'),
        *good,
    ]  # fmt: skip
    data, skipped = oci.index_json(configs, targets="{}")
    reasons = dict(skipped)
    assert set(reasons) == {"notjson.spack", "nospec.spack", "dangling.spack"}
    assert "not JSON" in reasons["notjson.spack"]
    assert '"spec"' in reasons["nospec.spack"]
    assert "y" in reasons["dangling.spack"]
    assert json.loads(data)["database"]["version"] == "8"
    for bad in (b"{}", b'{"database":{"version":"7","installs":{}}}', b"\xff"):
        with pytest.raises(ValueError, match="previous index"):
            oci.index_json(good, targets="{}", previous=bad)
