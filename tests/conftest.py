"""Shared pytest fixtures: real registries (see registry.py) and unique repository names.

Fixtures:

* ``registry``       plain HTTP registry (session-scoped)
* ``tls_registry``   HTTPS with a test CA (session-scoped)
* ``auth_registry``  HTTPS + htpasswd basic auth (session-scoped)
* ``repo_name``      a repository name unique to the test
* ``new_repo``       a callable making more unique names: ``new_repo("cache")``

The registries are shared by the whole session, so a test must use its own repository
names (``repo_name`` / ``new_repo``). When a test fails, the part of each registry's log
written during that test is added to the report.

Without ``docker-registry`` (or ``openssl``, or ``skopeo`` for the tests that use it) on PATH,
the tests that need them are skipped, except under CI (``CI`` set), where that is an error:
.ci/run installs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultproxy import FaultProxy
from registry import Registry, missing_tools, unique_repo_name
from tarball_tree import make_tree

_SOURCE_TREE = Path(__file__).resolve().parent.parent


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_tools(*, need_skopeo: bool = False) -> None:
    """Skip the test if registry tools are missing (fail instead under CI)."""
    missing = missing_tools(need_skopeo=need_skopeo)
    if missing:
        reason = f"not on PATH: {', '.join(missing)} (install: see .ci/run)"
        if _in_ci():
            pytest.fail(f"CI must run the registry tests, but {reason}", pytrace=False)
        pytest.skip(reason)


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        import spack_oci_rs  # type: ignore[import-not-found,unused-ignore]
    except ImportError as e:
        return [f"spack_oci_rs: not importable ({e})"]
    where = Path(spack_oci_rs.__file__ or "?").resolve()
    lines = [f"spack_oci_rs: {where}"]
    if where.is_relative_to(_SOURCE_TREE / "python"):
        lines.append("spack_oci_rs: WARNING: imported from the source tree, not the wheel")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under scripts/test.sh, make sure we test the wheel installed in its venv."""
    venv = os.environ.get("SPACK_OCI_RS_EXPECT_INSTALLED")
    if not venv:
        return
    import spack_oci_rs  # type: ignore[import-not-found,unused-ignore]

    where = Path(spack_oci_rs.__file__ or "?")
    if not where.is_relative_to(venv):
        raise pytest.UsageError(f"spack_oci_rs comes from {where}, not the wheel in {venv}")


def _start(
    tmp_path_factory: pytest.TempPathFactory, name: str, *, tls: bool = False, auth: bool = False
) -> Iterator[Registry]:
    require_tools()
    reg = Registry(tmp_path_factory.mktemp(name), tls=tls, auth=auth)
    with reg:
        yield reg


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry: ``.url`` is ``oci+http://127.0.0.1:PORT``."""
    yield from _start(tmp_path_factory, "registry-http")


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An HTTPS registry with a test CA (``.ca_file``): ``.url`` is ``oci://127.0.0.1:PORT``."""
    yield from _start(tmp_path_factory, "registry-tls", tls=True)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS + htpasswd basic auth: ``.username``/``.password``, ``.ca_file``."""
    yield from _start(tmp_path_factory, "registry-auth", tls=True, auth=True)


@pytest.fixture
def registry_tools() -> None:
    """Request this in tests that start their own Registry: skips (fails under CI) without
    docker-registry/openssl."""
    require_tools()


@pytest.fixture
def skopeo_available() -> None:
    """Request this in tests that run skopeo: skips (fails under CI) without it."""
    require_tools(need_skopeo=True)


@pytest.fixture
def new_repo(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``new_repo(hint="")`` → a fresh repository name, e.g. ``test-push-ok-cache-3-a1b2c3``."""

    def make(hint: str = "") -> str:
        base = request.node.name
        return unique_repo_name(f"{base}-{hint}" if hint else base)

    return make


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A Spack-like store root for the tarball tests."""
    s = tmp_path / "opt" / "spack"
    s.mkdir(parents=True)
    return s


@pytest.fixture
def prefix(store: Path) -> Path:
    """An install prefix in ``store`` holding tests/tarball_tree.py's rich tree."""
    p = store / "linux-x86_64" / "pkg-1.0-abcdef"
    p.mkdir(parents=True)
    make_tree(p, store)
    return p


@pytest.fixture
def repo_name(new_repo: Callable[[str], str]) -> str:
    """A repository name unique to this test (derived from its name)."""
    return new_repo("")


# -- registry logs in failure reports ------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    regs = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Registry)]
    item.stash[_LOG_OFFSETS] = {id(r): (r, r.log_offset()) for r in regs}
    return (yield)


_LOG_OFFSETS = pytest.StashKey[dict[int, tuple[Registry, int]]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for reg, offset in item.stash.get(_LOG_OFFSETS, {}).values():
            text = reg.log(offset)
            if len(text) > 20000:
                text = "[...]\n" + text[-20000:]
            state = "running" if reg.running else "NOT RUNNING"
            report.sections.append((f"registry log {reg.base} ({state})", text))
    return report


@pytest.fixture
def make_proxy(registry: Registry) -> Iterator[Callable[..., FaultProxy]]:
    """``make_proxy(**options)``: a started FaultProxy in front of ``registry``, stopped
    after the test."""
    proxies: list[FaultProxy] = []

    def make(**kw: object) -> FaultProxy:
        p = FaultProxy(registry.host, **kw).start()  # type: ignore[arg-type]
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()
