"""Spack on the Rust engine, end to end: an unmodified ``$SPACK_ROOT`` (v1.0.2, v1.1.0 or
develop) whose interpreter has the wheel installed — the zero-patch plugin — and
``config:oci_backend:rust``, real commands against real local registries.

Cross-checks with Spack's own Python backend: a cache pushed by either backend installs with
the other, and both push byte-identical tarballs, manifests and configs (but for the archive
timestamp). The Spack tree is checked to be untouched (every file's checksum) after the
session. Skipped, with the reason, when ``SPACK_ROOT`` is unset or the interpreter cannot run
Spack (clingo missing) — unless ``SPACK_OCI_RS_REQUIRE_SPACK`` is set (CI), then it fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spack_oci_rs as engine
from faultproxy import FaultProxy
from registry import Registry
from spack_env import LEAF, MID, ROOT, SpackEnv, parse_spec_list, require_spack, tree_digest
from spack_oci_rs import patch
from test_spack_harness import check_installed, data_digests

_SPACK_ROOT = require_spack(__file__)
_VERSION = patch.spack_version(_SPACK_ROOT)
#: Spack 1.0 has no oci+http:// mirrors: its caches are tested over HTTPS only.
_HAS_OCI_HTTP = not _VERSION.startswith("1.0.")


@pytest.fixture(scope="session")
def spack_tree() -> Iterator[Path]:
    """``$SPACK_ROOT`` itself, unpatched; every file is the same after the session."""
    before = tree_digest(_SPACK_ROOT)
    yield _SPACK_ROOT
    assert tree_digest(_SPACK_ROOT) == before, f"the tests changed files in {_SPACK_ROOT}"


@pytest.fixture
def cache_registry(request: pytest.FixtureRequest) -> Registry:
    """The plain-HTTP registry where Spack has ``oci+http://``, else the TLS one."""
    registry: Registry = request.getfixturevalue("registry" if _HAS_OCI_HTTP else "tls_registry")
    return registry


def make_env(
    root: Path, spack: Path, reg: Registry, *, backend: str = "rust", **kw: object
) -> SpackEnv:
    env = SpackEnv.create(root, spack_root=spack, ca_file=reg.ca_file, **kw)  # type: ignore[arg-type]
    env.run("config", "add", f"config:oci_backend:{backend}")
    return env


@pytest.fixture
def timings(request: pytest.FixtureRequest) -> Iterator[Callable[[str, float], None]]:
    steps: list[tuple[str, float]] = []
    yield lambda step, seconds: steps.append((step, seconds))
    if steps:
        width = max(len(s) for s, _ in steps)
        print(f"\n[{request.node.name}] Spack step timings (rust backend):")
        print("\n".join(f"  {s:<{width}}  {t:7.2f} s" for s, t in steps))


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param(
            "http", marks=pytest.mark.skipif(not _HAS_OCI_HTTP, reason="no oci+http:// in 1.0")
        ),
        "https",
    ],
)
def test_push_list_install_relocate(
    scheme: str,
    request: pytest.FixtureRequest,
    spack_tree: Path,
    tmp_path: Path,
    repo_name: str,
    timings: Callable[[str, float], None],
) -> None:
    reg: Registry = request.getfixturevalue("registry" if scheme == "http" else "tls_registry")
    env = make_env(tmp_path / "spack", spack_tree, reg)
    assert env.run("config", "get", "config").stdout.count("oci_backend: rust") == 1
    log_start = reg.log_offset()
    env.install(ROOT)
    installed = parse_spec_list(env.find("-l").stdout)
    before = check_installed(env)
    digests = data_digests(before[LEAF])
    url = reg.repo_url(repo_name)
    env.mirror_add("oci", url)

    push = env.push("oci", ROOT, update_index=True)
    uploads = reg.blob_user_agents(since=log_start)["upload"]
    timings("push --update-index (3 specs)", push.duration)
    assert push.stdout.count("Pushed ") == 3, push.stdout + push.stderr
    assert push.stdout.count("Tagged ") == 3, push.stdout
    tags = set(reg.list_tags(repo_name))
    assert len(tags) == 4 and "index.spack" in tags

    again = env.push("oci", ROOT)
    timings("push again (nothing to do)", again.duration)
    assert "Pushed " not in again.stdout
    forced = env.push("oci", ROOT, force=True)
    timings("push --force", forced.duration)
    assert forced.stdout.count("Pushed ") == 3
    timings("update-index (tag map: unchanged tags)", env.update_index("oci").duration)
    incremental = json.loads(reg.get_blob(repo_name, _index_layer(reg, repo_name)))
    shutil.rmtree(env.cache_dir / "misc", ignore_errors=True)  # no local state either way
    timings("update-index (again)", env.update_index("oci").duration)
    full = json.loads(reg.get_blob(repo_name, _index_layer(reg, repo_name)))
    assert sorted(incremental["database"]["installs"]) == sorted(full["database"]["installs"])
    assert len(full["database"]["installs"]) == 3

    # The plugin makes oci+http:// indexes readable too.
    listing = env.buildcache_list()
    timings("buildcache list", listing.duration)
    assert parse_spec_list(listing.stdout) == installed, listing.stdout + listing.stderr

    env.uninstall_all()
    env.clear_download_caches()
    log_start = reg.log_offset()
    reinstall = env.install(ROOT, cache_only=True)
    downloads = reg.blob_user_agents(since=log_start)["download"]
    timings("install --cache-only (3 specs)", reinstall.duration)
    assert reinstall.stdout.count("from binary cache") == 3, reinstall.stdout
    after = check_installed(env)
    assert after == before and data_digests(after[LEAF]) == digests

    other = make_env(
        tmp_path / "other",
        spack_tree,
        reg,
        repo_from=env,
        store=tmp_path / "other" / "a-much-longer-install-tree-root-for-relocation",
    )
    other.mirror_add("oci", url)
    relocated = other.install(ROOT, cache_only=True)
    timings("install --cache-only, other store (relocation)", relocated.duration)
    moved = check_installed(other)
    assert all(moved[n] != before[n] for n in moved)
    assert data_digests(moved[LEAF]) == digests
    # Every blob upload and download of Spack's went through the engine.
    assert uploads and downloads, (uploads, downloads)
    assert all(a.startswith("spack-oci-rs/") for a in uploads | downloads), (uploads, downloads)


def _index_layer(reg: Registry, repo: str) -> str:
    digest: str = reg.get_manifest(repo, "index.spack").json()["layers"][0]["digest"]
    return digest


def _image(reg: Registry, repo: str, tag: str) -> tuple[dict, dict, bytes]:  # type: ignore[type-arg]
    manifest = reg.get_manifest(repo, tag).json()
    config_bytes = reg.get_blob(repo, manifest["config"]["digest"])
    return manifest, json.loads(config_bytes), config_bytes


def test_backends_interoperate_and_agree(
    cache_registry: Registry,
    spack_tree: Path,
    tmp_path: Path,
    new_repo: Callable[[str], str],
) -> None:
    """Rust-pushed caches install with Spack's backend and vice versa; both backends push the
    same tags, byte-identical tarballs, and the same configs and manifests but for the
    archive timestamp (and so the config digest)."""
    registry = cache_registry
    py_repo, rs_repo = new_repo("python"), new_repo("rust")
    env = make_env(tmp_path / "spack", spack_tree, registry, backend="python")
    env.install(ROOT)
    before = check_installed(env)
    env.mirror_add("py", registry.repo_url(py_repo))
    env.mirror_add("rs", registry.repo_url(rs_repo))
    log_start = registry.log_offset()
    env.push("py", ROOT, update_index=True)
    python_agents = registry.blob_user_agents(since=log_start)
    assert python_agents["upload"] and not any(
        a.startswith("spack-oci-rs/") for a in python_agents["upload"]
    ), python_agents  # the toggle at python: Spack's own client
    env.run("config", "add", "config:oci_backend:rust")
    log_start = registry.log_offset()
    env.push("rs", ROOT, update_index=True)
    rust_agents = registry.blob_user_agents(since=log_start)["upload"]
    assert rust_agents and all(a.startswith("spack-oci-rs/") for a in rust_agents), rust_agents

    tags = sorted(registry.list_tags(py_repo))
    assert tags == sorted(registry.list_tags(rs_repo))
    for tag in tags:
        if tag == "index.spack":
            continue
        pm, pc, _ = _image(registry, py_repo, tag)
        rm, rc, rc_bytes = _image(registry, rs_repo, tag)
        assert pm["layers"] == rm["layers"], tag  # byte-identical tarballs
        assert pc["rootfs"] == rc["rootfs"]
        assert list(pc) == list(rc)
        assert {k: v for k, v in pc.items() if k != "archive_timestamp"} == {
            k: v for k, v in rc.items() if k != "archive_timestamp"
        }
        assert rc_bytes == json.dumps(rc, separators=(",", ":")).encode()
        del pm["config"]["digest"], rm["config"]["digest"]
        assert pm == rm

    # Each backend installs what the other pushed.
    for backend, mirror in (("rust", "py"), ("python", "rs")):
        env.run("config", "add", f"config:oci_backend:{backend}")
        for m in ("py", "rs"):
            env.mirror_remove(m, check=False)
        env.mirror_add(mirror, registry.repo_url(py_repo if mirror == "py" else rs_repo))
        env.uninstall_all()
        env.clear_download_caches()
        out = env.install(ROOT, cache_only=True)
        assert out.stdout.count("from binary cache") == 3, (backend, out.stdout)
        assert check_installed(env) == before


def test_base_image_and_tag(
    cache_registry: Registry,
    skopeo_available: None,
    spack_tree: Path,
    tmp_path: Path,
    new_repo: Callable[[str], str],
) -> None:
    """``--base-image`` (on the same registry: with the rust backend an ``oci+http://`` base
    image works) and ``--tag``; skopeo copies the result."""
    registry = cache_registry
    base = registry.push_base_image(new_repo("base"))
    cache = new_repo("cache")
    env = make_env(tmp_path / "spack", spack_tree, registry)
    env.install(ROOT)
    env.mirror_add("oci", registry.repo_url(cache))
    base_ref = f"{registry.url}/{base.repo}:{base.tag}"
    push = env.push("oci", ROOT, base_image=base_ref, tag="env-image")
    assert push.returncode == 0, push.stderr
    image = registry.get_manifest(cache, "env-image").json()
    layers = [x["digest"] for x in image["layers"]]
    assert layers[: len(base.layer_digests)] == base.layer_digests
    assert len(layers) == len(base.layer_digests) + 3
    config = json.loads(registry.get_blob(cache, image["config"]["digest"]))
    env_vars = dict(e.split("=", 1) for e in config["config"]["Env"])
    assert str(env.location(ROOT) / "bin") in env_vars["PATH"]
    registry.skopeo("copy", registry.docker_ref(cache, "env-image"), f"oci:{tmp_path / 'out'}:x")
    leaf_tag = f"{LEAF}-1.0-{env.location(LEAF).name.rsplit('-', 1)[1]}.spack"
    info = registry.inspect(cache, leaf_tag)
    assert info["Layers"][: len(base.layer_digests)] == base.layer_digests


def test_bad_input(
    cache_registry: Registry, spack_tree: Path, tmp_path: Path, repo_name: str
) -> None:
    registry = cache_registry
    env = make_env(tmp_path / "spack", spack_tree, registry)
    env.install(ROOT)

    # An unknown toggle value: Spack's schema says so.
    bad = env.run("config", "add", "config:oci_backend:fortran", check=False)
    assert bad.returncode != 0
    assert "fortran" in bad.stderr and "python" in bad.stderr, bad.stderr

    # The toggle on, the package importable but its native module missing: one clear line.
    fake = tmp_path / "shadow" / "spack_oci_rs"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("from ._native import push  # no _native here\n")
    env.mirror_add("oci", registry.repo_url(repo_name))
    env.extra_env["PYTHONPATH"] = str(fake.parent)
    shadowed = env.run("buildcache", "push", "--unsigned", "oci", ROOT, check=False)
    del env.extra_env["PYTHONPATH"]
    assert shadowed.returncode != 0
    errors = [line for line in shadowed.stderr.splitlines() if "Error" in line]
    assert len(errors) == 1 and "pip install spack-oci-rs" in errors[0], shadowed.stderr
    assert "spack_oci_rs._native" in errors[0] and "Traceback" not in shadowed.stderr

    # One spec's prefix is gone: it fails, clearly; the others are pushed.
    leaf = env.location(LEAF)
    shutil.rmtree(leaf)
    push = env.run("buildcache", "push", "--unsigned", "oci", ROOT, check=False)
    assert push.returncode != 0
    assert str(leaf) in push.stderr, push.stderr
    tags = registry.list_tags(repo_name)
    assert len(tags) == 2 and not any(t.startswith(LEAF) for t in tags), tags
    assert any(t.startswith(MID) for t in tags)

    # The registry is down: a clear error, nothing recorded as pushed.
    env.run("mirror", "add", "--unsigned", "down", "oci://127.0.0.1:9/nothing")
    down = env.run("buildcache", "push", "--unsigned", "down", ROOT, check=False)
    assert down.returncode != 0
    assert "127.0.0.1:9" in down.stderr and "Pushed " not in down.stdout, down.stderr


def test_mirror_credentials(
    auth_registry: Registry, spack_tree: Path, tmp_path: Path, repo_name: str
) -> None:
    """Credentials from ``spack mirror add --oci-username-variable/--oci-password-variable``
    (Spack's own lookup) reach the engine; a wrong password fails clearly, without the
    secret in the output."""
    reg = auth_registry
    assert reg.password is not None
    env = make_env(tmp_path / "spack", spack_tree, reg)
    env.install(ROOT)
    env.extra_env.update(OCI_USER="spack", OCI_PASS=reg.password)
    env.mirror_add(
        "oci",
        reg.repo_url(repo_name),
        extra=["--oci-username-variable", "OCI_USER", "--oci-password-variable", "OCI_PASS"],
    )
    push = env.push("oci", ROOT, update_index=True)
    assert push.stdout.count("Pushed ") == 3, push.stdout + push.stderr
    env.uninstall_all()
    env.clear_download_caches()
    assert env.install(ROOT, cache_only=True).stdout.count("from binary cache") == 3
    check_installed(env)

    env.extra_env["OCI_PASS"] = "not-the-password"
    bad = env.run("buildcache", "push", "--unsigned", "--force", "oci", ROOT, check=False)
    assert bad.returncode != 0
    assert reg.host in bad.stderr and "not-the-password" not in bad.stdout + bad.stderr
    assert reg.password not in bad.stdout + bad.stderr


@pytest.mark.skipif(_VERSION.startswith("1.0."), reason="Spack 1.0 has no config:installer:new")
def test_new_installer_prefetches(
    cache_registry: Registry, spack_tree: Path, tmp_path: Path, repo_name: str
) -> None:
    """``config:installer:new`` (v1.1, develop) skips ``PackageInstaller._install``: the
    plugin's prefetch runs from the new installer too (its ``-d`` line counts the blobs)."""
    env = make_env(tmp_path / "spack", spack_tree, cache_registry)
    env.install(ROOT)
    before = check_installed(env)
    env.mirror_add("oci", cache_registry.repo_url(repo_name))
    env.push("oci", ROOT, update_index=True)
    env.uninstall_all()
    env.clear_download_caches()
    # The new installer polls stdin: give it a pipe (input=""), not /dev/null.
    out = env.run("-c", "config:installer:new", "-d", "install", ROOT, input="")
    assert "spack_oci_rs: prefetched 6 blobs for 3 specs" in out.stdout + out.stderr, out.stdout
    assert check_installed(env) == before


@pytest.mark.skipif(not _HAS_OCI_HTTP, reason="no oci+http:// in 1.0 (the proxy is plain HTTP)")
def test_push_requests_and_what_is_prepared(
    registry: Registry,
    make_proxy: Callable[..., FaultProxy],
    spack_tree: Path,
    tmp_path: Path,
    repo_name: str,
) -> None:
    """A push lists the tags once and prepares (spec dict, buildinfo, environment) only the
    specs missing from the cache and the existing ones their layers stack on; only those
    stacked layers' manifests and configs are read. A re-push of what exists is the tag
    listing alone, without an engine push."""
    env = make_env(tmp_path / "spack", spack_tree, registry)
    (other,) = env.add_many_packages(1, depends_on=[LEAF])
    env.install(ROOT, other)
    proxy = make_proxy()
    env.mirror_add("oci", proxy.repo_url(repo_name))
    env.push("oci", ROOT)
    for pushed, prepared in (("2 of 4", True), ("", False)):
        before = len(proxy.log)
        out = env.run("-d", "buildcache", "push", "--unsigned", "oci", ROOT, other)
        sent = [f"{r.method} {r.path}" for r in list(proxy.log)[before:]]
        assert sum("/tags/list" in r for r in sent) == 1, sent
        reads = [r for r in sent if r.startswith("GET") and "/tags/list" not in r]
        if prepared:
            assert f"spack_oci_rs: pushed {pushed} specs" in out.stderr, out.stderr
            assert len(reads) == 2 and all(
                f"/manifests/{LEAF}-" in r or "/blobs/" in r for r in reads
            ), sent
        else:
            assert "spack_oci_rs: pushed" not in out.stderr and sent == [sent[0]], sent
    tags = engine.list_tags(registry.repo_url(repo_name))
    assert sorted(t.split("-")[1] for t in tags) == ["leaf", "many", "mid", "root"], tags


@pytest.mark.skipif(not _HAS_OCI_HTTP, reason="no oci+http:// in 1.0 (the proxy is plain HTTP)")
def test_install_prefetch_answers_every_manifest_request(
    registry: Registry,
    make_proxy: Callable[..., FaultProxy],
    spack_tree: Path,
    tmp_path: Path,
    repo_name: str,
) -> None:
    """The old installer's prefetch comes from the build requests (root, its dependencies,
    their cache policies): each image's manifest and blobs are read once, by the prefetch;
    Spack's per-spec manifest request is answered from it. ``--only dependencies`` leaves
    the root out."""
    env = make_env(tmp_path / "spack", spack_tree, registry)
    env.install(ROOT)
    env.mirror_add("seed", registry.repo_url(repo_name))
    env.push("seed", ROOT, update_index=True)
    env.mirror_remove("seed")
    proxy = make_proxy()
    env.mirror_add("oci", proxy.repo_url(repo_name))
    for only, specs in ((("--only", "dependencies"), 2), ((), 3)):
        env.uninstall_all()
        env.clear_download_caches()
        before = len(proxy.log)
        out = env.run("-d", "install", "--cache-only", "--no-check-signature", *only, ROOT)
        assert f"spack_oci_rs: prefetched {2 * specs} blobs for {specs} specs" in out.stderr
        sent = [f"{r.method} {r.path}" for r in list(proxy.log)[before:]]
        spec_manifests = [r for r in sent if "/manifests/" in r and "index.spack" not in r]
        assert len(spec_manifests) == specs == len(set(spec_manifests)), sent
        blobs = [r for r in sent if "/blobs/" in r]  # spec files, tarballs, the index
        assert len(blobs) == len(set(blobs)) and len(blobs) <= 2 * specs + 1, sent
