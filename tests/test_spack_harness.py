"""End-to-end checks of tests/spack_env.py with Spack's own (Python) OCI backend.

Real Spack (``$SPACK_ROOT``, run with ``$SPACK_PYTHON`` or this interpreter, which must import
clingo) against real local registries (tests/registry.py): install the ``ocitest`` packages,
push them, list the build cache, uninstall, install again from the cache, in the same store and
in another one (relocation). Each step's duration is printed (``pytest -s``) and recorded as a
user property (``--junitxml``).

Skipped, with the reason printed, when ``SPACK_ROOT`` is unset or clingo is missing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry import Registry
from spack_env import (
    LEAF,
    MID,
    ROOT,
    SpackEnv,
    many_name,
    parse_spec_list,
    skip_reason,
)

_REASON = skip_reason()
if _REASON:
    print(f"\ntests/test_spack_harness.py skipped: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

TIMED = Callable[[str, float], None]


@pytest.fixture
def timings(
    request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> Iterator[TIMED]:
    """``timings(step, seconds)``: printed at the end of the test, and recorded."""
    steps: list[tuple[str, float]] = []

    def add(step: str, seconds: float) -> None:
        steps.append((step, seconds))
        record_property(f"seconds: {step}", round(seconds, 3))

    yield add
    if steps:
        width = max(len(s) for s, _ in steps)
        lines = [f"  {s:<{width}}  {t:7.2f} s" for s, t in steps]
        print(f"\n[{request.node.name}] Spack step timings:\n" + "\n".join(lines))


def _registry(request: pytest.FixtureRequest, scheme: str) -> Registry:
    return request.getfixturevalue("registry" if scheme == "http" else "tls_registry")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_installed(env: SpackEnv) -> dict[str, Path]:
    """The three packages are installed in ``env``'s store, and every file naming a prefix
    (text, symlinks) names the right one. Returns the prefixes by package name."""
    prefixes = {name: env.location(name) for name in (LEAF, MID, ROOT)}
    store = env.store.resolve()
    for name, prefix in prefixes.items():
        assert prefix.is_dir(), name
        assert prefix.resolve().is_relative_to(store), (name, prefix, store)
    leaf, mid, root = prefixes[LEAF], prefixes[MID], prefixes[ROOT]

    share = leaf / "share" / "oci-leaf"
    assert (share / "prefix.txt").read_text() == f"prefix={leaf}\n"
    assert os.readlink(share / "prefix-link") == str(share / "prefix.txt")
    assert (share / "prefix-link").read_text() == f"prefix={leaf}\n"
    true = leaf / "bin" / "oci-leaf-true"
    assert true.read_bytes()[:4] == b"\x7fELF"
    assert true.read_bytes() == Path("/bin/true").read_bytes()
    subprocess.run([true], check=True)

    assert (mid / "share" / "oci-mid" / "deps.txt").read_text() == f"self={mid}\nleaf={leaf}\n"
    assert os.readlink(mid / "lib" / "leaf-link") == str(leaf)

    script = root / "bin" / "oci-root"
    out = subprocess.run([script], check=True, capture_output=True, text=True).stdout
    assert out == f"self={mid}\nleaf={leaf}\n"
    return prefixes


def data_digests(prefix: Path) -> dict[str, str]:
    share = prefix / "share" / "oci-leaf"
    return {p.name: _sha256(p) for p in sorted(share.glob("data-*.bin"))}


def test_isolated_config(tmp_path: Path) -> None:
    """Only the test repository, no mirrors, no bootstrapping, everything under tmp_path."""
    env = SpackEnv.create(tmp_path / "spack")
    assert env.version().startswith(("1.", "2."))
    repos = env.run("repo", "list").stdout
    assert "ocitest" in repos and "builtin" not in repos, repos
    assert "spack-public" not in env.run("mirror", "list").stdout
    assert env.run("config", "get", "bootstrap").stdout.count("enable: false") == 1
    root = env.run("config", "get", "config").stdout
    assert str(env.store) in root
    assert env.find_json() == []


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_push_list_reinstall_relocate(
    scheme: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    repo_name: str,
    timings: TIMED,
) -> None:
    reg = _registry(request, scheme)
    env = SpackEnv.create(tmp_path / "spack", ca_file=reg.ca_file)
    timings("spack --version (startup)", env.run("--version").duration)

    timings("install oci-root (from source, 3 specs)", env.install(ROOT).duration)
    installed = parse_spec_list(env.find("-l").stdout)
    assert [s for _, s in installed] == [f"{n}@1.0" for n in (LEAF, MID, ROOT)]
    before = check_installed(env)
    digests = data_digests(before[LEAF])

    url = reg.repo_url(repo_name)
    assert url.startswith("oci+http://" if scheme == "http" else "oci://")
    env.mirror_add("oci", url)
    assert "signed: false" in (env.config_dir / "mirrors.yaml").read_text()

    push = env.push("oci", ROOT, update_index=True)
    timings("buildcache push --update-index (3 specs)", push.duration)
    assert push.stdout.count("Pushed ") == 3, push.stdout
    tags = reg.list_tags(repo_name)
    expected_tags = {f"{n}-1.0-{env.location(n).name.rsplit('-', 1)[1]}.spack" for n in before}
    assert set(tags) == expected_tags | {"index.spack"}

    again = env.push("oci", ROOT)
    timings("buildcache push again (3 specs present, nothing to do)", again.duration)
    assert "Pushed " not in again.stdout
    forced = env.push("oci", ROOT, force=True)
    timings("buildcache push --force (3 specs)", forced.duration)
    assert forced.stdout.count("Pushed ") == 3, forced.stdout
    timings("buildcache update-index", env.update_index("oci").duration)

    # Spack 1.1.0 does not read indexes from oci+http:// mirrors (see spack_env.py,
    # OCI_HTTP_INDEX_PATCH, and test_oci_http_index_unpatched below): list through the wrapper.
    env.patch_oci_http_index = scheme == "http"
    listing = env.buildcache_list()
    timings("buildcache list (index fetch)", listing.duration)
    env.patch_oci_http_index = False
    assert parse_spec_list(listing.stdout) == installed, listing.stdout

    timings("uninstall -ya", env.uninstall_all().duration)
    assert env.find_json() == []
    assert not before[ROOT].exists()

    env.clear_download_caches()  # or Spack reuses the config blobs fetched by update-index
    reinstall = env.install(ROOT, cache_only=True)
    timings("install --cache-only oci-root (3 specs, same store)", reinstall.duration)
    assert reinstall.stdout.count("from binary cache") == 3, reinstall.stdout
    after = check_installed(env)
    assert after == before
    assert data_digests(after[LEAF]) == digests
    assert parse_spec_list(env.find("-l").stdout) == installed

    # The same binaries in another, longer install tree: relocation of text and symlinks.
    other = SpackEnv.create(
        tmp_path / "other",
        repo_from=env,
        store=tmp_path / "other" / "a-longer-install-tree-root-for-relocation",
        ca_file=reg.ca_file,
    )
    other.mirror_add("oci", url)
    relocated = other.install(ROOT, cache_only=True)
    timings("install --cache-only oci-root (3 specs, other store)", relocated.duration)
    moved = check_installed(other)
    for name in moved:
        assert moved[name] != before[name]
        assert moved[name].name == before[name].name  # same hash
    assert data_digests(moved[LEAF]) == digests

    for i in range(3):
        timings(f"spack --version #{i + 1}", env.run("--version").duration)
    for i in range(3):
        timings(f"spack find (3 installed) #{i + 1}", env.find().duration)


def test_oci_http_index_unpatched(
    registry: Registry, tmp_path: Path, repo_name: str, timings: TIMED
) -> None:
    """Plain Spack 1.1.0 and an ``oci+http://`` mirror: the index is pushed but never read.

    XFAIL while the bug is there (with where it is in the reason); passes once Spack (or our
    Spack patch) reads indexes from oci+http mirrors.
    """
    env = SpackEnv.create(tmp_path / "spack")
    env.install(ROOT)
    env.mirror_add("oci", registry.repo_url(repo_name))
    env.push("oci", ROOT, update_index=True)
    assert "index.spack" in registry.list_tags(repo_name)

    listing = env.buildcache_list()
    if len(parse_spec_list(listing.stdout)) == 3:
        return  # fixed
    assert listing.stdout.strip() == ""
    debug = env.run("-d", "buildcache", "list", "-a")
    assert "unknown url type: oci+http" in debug.stderr, debug.stderr[-3000:]
    assert f"{registry.repo_url(repo_name)}/v3/manifests/index/index.manifest.json" in debug.stderr

    # The wrapper that treats oci+http like oci fixes it, so that is the whole bug.
    env.patch_oci_http_index = True
    assert len(parse_spec_list(env.buildcache_list().stdout)) == 3

    # Installing from the cache works anyway: it fetches each spec's manifest by tag.
    env.patch_oci_http_index = False
    env.uninstall_all()
    env.clear_download_caches()
    timings(
        "install --cache-only (oci+http, no index)", env.install(ROOT, cache_only=True).duration
    )
    check_installed(env)
    pytest.xfail(
        "Spack 1.1.0 never fetches the build-cache index of an oci+http:// mirror: "
        "binary_distribution.py:464 `if scheme != \"oci\"` sends 'oci+http' to "
        "web_util.url_exists(<url>/v3/manifests/index/index.manifest.json) (line 466), which "
        "fails with 'unknown url type: oci+http' (util/web.py:477-484, debug log only) so "
        "_fetch_and_cache_index returns False (line 467); get_index_fetcher (line 2829 "
        '`scheme == "oci"`) would not choose OCIIndexFetcher either'
    )


def test_base_image_and_tag(
    tls_registry: Registry,
    skopeo_available: None,
    tmp_path: Path,
    new_repo: Callable[[str], str],
    timings: TIMED,
) -> None:
    """``--base-image`` and ``--tag`` (base image on the HTTPS registry: see below)."""
    reg = tls_registry
    base = reg.push_base_image(new_repo("base"))
    cache = new_repo("cache")
    env = SpackEnv.create(tmp_path / "spack", ca_file=reg.ca_file)
    env.install(ROOT)
    env.mirror_add("oci", reg.repo_url(cache))
    push = env.push("oci", ROOT, base_image=base.ref, tag="env-image")
    timings("buildcache push --base-image --tag (3 specs)", push.duration)

    image = reg.get_manifest(cache, "env-image").json()
    layers = [layer["digest"] for layer in image["layers"]]
    assert layers[: len(base.layer_digests)] == base.layer_digests
    assert len(layers) == len(base.layer_digests) + 3
    leaf_tag = f"{LEAF}-1.0-{env.location(LEAF).name.rsplit('-', 1)[1]}.spack"
    leaf_image = reg.get_manifest(cache, leaf_tag).json()
    assert [x["digest"] for x in leaf_image["layers"]][:-1] == base.layer_digests


def test_base_image_on_plain_http_fails(
    registry: Registry, skopeo_available: None, tmp_path: Path, new_repo: Callable[[str], str]
) -> None:
    """Spack 1.1.0 parses ``--base-image`` with ImageReference.from_string, whose scheme is
    always https (binary_distribution.py:989, oci/image.py:106): a base image on a plain-HTTP
    registry cannot be used, even when the mirror is oci+http://."""
    base = registry.push_base_image(new_repo("base"))
    env = SpackEnv.create(tmp_path / "spack")
    env.install(ROOT)
    env.mirror_add("oci", registry.repo_url(new_repo("cache")))
    proc = env.run("buildcache", "push", "--unsigned", "--base-image", base.ref, "oci", ROOT,
                   check=False)  # fmt: skip
    if proc.returncode == 0:
        return  # fixed
    assert f"https://{registry.host}/v2/{base.repo}/manifests/{base.tag}" in proc.stderr, (
        proc.stderr
    )


def test_many_packages_environment(
    registry: Registry, tmp_path: Path, repo_name: str, timings: TIMED
) -> None:
    """The ``oci-many-<i>`` generator and Spack environments: a small version of the
    100-spec benchmark."""
    count = 5
    env = SpackEnv.create(tmp_path / "spack", many=count)
    specs = [many_name(i) for i in range(count)]
    env_dir = env.write_environment(tmp_path / "env", specs)
    timings(f"-e ENV install ({count} specs)", env.run("-e", env_dir, "install").duration)
    assert sorted(s["name"] for s in env.find_json()) == sorted(specs)
    env.mirror_add("oci", registry.repo_url(repo_name))
    push = env.run("-e", env_dir, "buildcache", "push", "--unsigned", "--update-index", "oci")
    timings(f"-e ENV buildcache push --update-index ({count} specs)", push.duration)
    assert push.stdout.count("Pushed ") == count
    env.uninstall_all()
    env.clear_download_caches()
    install = env.run("-e", env_dir, "install", "--cache-only", "--no-check-signature")
    timings(f"-e ENV install --cache-only ({count} specs)", install.duration)
    assert install.stdout.count("from binary cache") == count
    for name in specs:
        prefix = env.location(name)
        assert (prefix / "share" / name / "prefix.txt").read_text() == f"prefix={prefix}\n"
