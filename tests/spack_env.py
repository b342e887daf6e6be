"""An isolated, offline Spack for end-to-end tests and benchmarks of OCI build caches.

Nothing here imports Spack (nor pytest, but in :func:`require_spack`): Spack always runs as a
subprocess, ``$SPACK_ROOT/bin/spack`` under the interpreter named by ``SPACK_PYTHON`` (default:
this interpreter), which must be able to ``import clingo`` (``pip install clingo``): Spack's
bootstrapping is switched off.

:meth:`SpackEnv.create` makes, in a directory of its own:

* ``config/``   a user config scope (``SPACK_USER_CONFIG_PATH``): ``repos.yaml`` with only the
  test repository (``repos::``), ``mirrors.yaml`` with no mirrors (``mirrors::``, so not even
  Spack's default source mirror), ``bootstrap.yaml`` with ``enable: false`` and
  ``config.yaml`` putting the install tree, stages and caches under the directory;
* ``cache/``    the user cache path (``SPACK_USER_CACHE_PATH``, instead of ``~/.spack``);
* ``system/``   an empty system scope (``SPACK_SYSTEM_CONFIG_PATH``, instead of ``/etc/spack``);
* ``repos/spack_repo/ocitest/``  a package repository (namespace ``ocitest``, API v2) with
  packages that need no compiler, no download and no other repository:

  - ``oci-leaf``: seeded pseudo-random data files, ``share/oci-leaf/prefix.txt`` holding its own
    install prefix, ``share/oci-leaf/prefix-link`` a symlink with an absolute target inside the
    prefix, and ``bin/oci-leaf-true``, a copy of ``/bin/true`` (an ELF file);
  - ``oci-mid`` (depends on oci-leaf, link+run): ``share/oci-mid/deps.txt`` naming its own and
    oci-leaf's prefixes, and ``lib/leaf-link``, an absolute symlink to oci-leaf's prefix;
  - ``oci-root`` (depends on oci-mid, link+run): a shell script naming oci-mid's prefix;
  - ``oci-many-<i>`` (``many=N``, or :meth:`SpackEnv.add_many_packages` later): N independent
    small packages for benchmarks of environments with many specs.

Spack itself is only read: the install tree, stages and caches are in the directory, and
Python's bytecode for Spack's modules goes to ``PYTHONPYCACHEPREFIX`` (see :func:`pycache_dir`)
instead of ``$SPACK_ROOT/lib/spack``.

Typical use::

    env = SpackEnv.create(tmp / "spack")
    env.install("oci-root")
    env.mirror_add("rs", registry.repo_url("cache"))        # --unsigned
    env.push("rs", "oci-root", update_index=True)
    env.uninstall_all()
    env.install("oci-root", cache_only=True)

Every command's duration is kept in :attr:`SpackEnv.history` (and on the result, as
``.duration``), for the benchmarks. ``python tests/spack_env.py DIR`` makes an environment in
DIR and prints the variables to use it from a shell.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The namespace of the test package repository.
NAMESPACE = "ocitest"

#: The three packages of the basic DAG, leaf first.
LEAF, MID, ROOT = "oci-leaf", "oci-mid", "oci-root"

#: The placeholder "compiler" package (see its package.py): configured, never used.
STUB_COMPILER = "oci-stub-compiler"

#: Default timeout of one Spack command, in seconds.
DEFAULT_TIMEOUT = 900.0

#: Variables dropped from the environment Spack runs in: proxies (Spack only talks to
#: loopback here) and PYTHONDONTWRITEBYTECODE (Spack's bytecode goes to PYTHONPYCACHEPREFIX;
#: without it every command compiles Spack again, about 1.5 s more, unlike a user's Spack).
_DROPPED_VARS = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "PYTHONDONTWRITEBYTECODE",
)


class SpackCommandError(RuntimeError):
    """A Spack command exited non-zero; the message holds the command, stdout and stderr."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"spack failed (exit {returncode}): {shlex.join(cmd)}\n"
            f"--- stderr ---\n{stderr.strip()}\n--- stdout ---\n{stdout.strip()}"
        )
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class SpackRun(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What :func:`spack` returns: a CompletedProcess (text output) with its ``duration``."""

    duration: float


# ---------------------------------------------------------------------------------------------
# Where Spack is, and whether it can run
# ---------------------------------------------------------------------------------------------


def spack_root_from_env() -> Path | None:
    """``$SPACK_ROOT`` as a Path, or None when it is unset or empty."""
    root = os.environ.get("SPACK_ROOT", "").strip()
    return Path(root) if root else None


def spack_python() -> str:
    """The interpreter Spack runs under: ``$SPACK_PYTHON``, else the current one."""
    return os.environ.get("SPACK_PYTHON", "").strip() or sys.executable


def pycache_dir() -> Path:
    """Where Spack's bytecode goes (``$SPACK_OCI_RS_PYCACHE``, else a per-user temp dir).

    Shared by all environments, so only the first command of a session compiles Spack.
    """
    where = os.environ.get("SPACK_OCI_RS_PYCACHE", "").strip()
    if where:
        return Path(where)
    return Path(tempfile.gettempdir()) / f"spack-oci-rs-pycache-{os.getuid()}"


def skip_reason(spack_root: Path | None = None, python: str | None = None) -> str | None:
    """Why Spack end-to-end tests cannot run here, or None when they can."""
    root = spack_root or spack_root_from_env()
    if root is None:
        return "SPACK_ROOT is not set (point it at a Spack >= 1.0 checkout, e.g. /tmp/spack)"
    if not (root / "bin" / "spack").is_file():
        return f"SPACK_ROOT={root} has no bin/spack"
    python = python or spack_python()
    try:
        proc = subprocess.run(
            [python, "-c", "import clingo"], capture_output=True, text=True, timeout=60
        )
    except OSError as e:
        return f"cannot run SPACK_PYTHON={python}: {e}"
    if proc.returncode != 0:
        return (
            f"clingo is not importable by {python} (Spack's solver; bootstrapping is off): "
            f"`{python} -m pip install clingo`"
        )
    return None


def require_spack(test_file: str) -> Path:
    """``$SPACK_ROOT`` for a test module that needs Spack; skips the module (with the reason)
    when Spack cannot run here, or fails it when ``SPACK_OCI_RS_REQUIRE_SPACK`` is set (CI
    runs the Spack suites on every supported tree: a skip there would hide a broken setup)."""
    import pytest

    reason = skip_reason()
    if reason is None:
        root = spack_root_from_env()
        assert root is not None
        return root
    if os.environ.get("SPACK_OCI_RS_REQUIRE_SPACK"):
        pytest.fail(f"{Path(test_file).name}: Spack is required here: {reason}", pytrace=False)
    print(f"\n{Path(test_file).name} skipped: {reason}", file=sys.stderr)
    pytest.skip(reason, allow_module_level=True)


def tree_digest(root: Path) -> str:
    """One sha256 over every file's path, mode and content (links: their target) below
    ``root``: equal before and after means the tree was not touched."""
    import hashlib

    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            h.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_symlink():
                h.update(b"L" + os.readlink(path).encode())
            else:
                h.update(oct(path.stat().st_mode).encode() + path.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The test package repository
# ---------------------------------------------------------------------------------------------


def _class_name(pkg_name: str) -> str:
    """Spack's class name for a package name (``oci-many-12`` -> ``OciMany12``)."""
    return "".join(part.capitalize() for part in pkg_name.replace("_", "-").split("-"))


def _pkg_dir(pkg_name: str) -> str:
    """The package's directory in an API v2 repository (``oci-many-12`` -> ``oci_many_12``)."""
    return pkg_name.replace("-", "_")


_HEADER = """\
# Generated by spack-oci-rs tests/spack_env.py: a package for build-cache tests. It needs no
# compiler and no sources (has_code = False).
import os
import random
import shutil

from spack.package import *

"""

_LEAF = '''\
class OciLeaf(Package):
    """Leaf of the test DAG: data files, a file naming its prefix, a symlink, an ELF file."""

    homepage = "https://example.com/oci-leaf"
    has_code = False

    version("1.0")

    #: sizes of the pseudo-random (incompressible) data files, in bytes
    data_sizes = {data_sizes!r}

    def install(self, spec, prefix):
        share = join_path(prefix, "share", "oci-leaf")
        mkdirp(share)
        rng = random.Random("oci-leaf")
        for i, size in enumerate(self.data_sizes):
            with open(join_path(share, "data-%d.bin" % i), "wb") as f:
                f.write(rng.randbytes(size))
        with open(join_path(share, "prefix.txt"), "w") as f:
            f.write("prefix=%s\\n" % prefix)
        os.symlink(join_path(share, "prefix.txt"), join_path(share, "prefix-link"))
        mkdirp(prefix.bin)
        shutil.copy("/bin/true", join_path(prefix.bin, "oci-leaf-true"))
'''

_MID = '''\
class OciMid(Package):
    """Middle of the test DAG: text naming its own and oci-leaf's prefixes, a symlink."""

    homepage = "https://example.com/oci-mid"
    has_code = False

    version("1.0")

    depends_on("oci-leaf", type=("link", "run"))

    def install(self, spec, prefix):
        share = join_path(prefix, "share", "oci-mid")
        mkdirp(share)
        with open(join_path(share, "deps.txt"), "w") as f:
            f.write("self=%s\\n" % prefix)
            f.write("leaf=%s\\n" % spec["oci-leaf"].prefix)
        mkdirp(prefix.lib)
        os.symlink(spec["oci-leaf"].prefix, join_path(prefix.lib, "leaf-link"))
'''

_ROOT = '''\
class OciRoot(Package):
    """Root of the test DAG: a script naming oci-mid's prefix."""

    homepage = "https://example.com/oci-root"
    has_code = False

    version("1.0")

    depends_on("oci-mid", type=("link", "run"))

    def install(self, spec, prefix):
        mkdirp(prefix.bin)
        script = join_path(prefix.bin, "oci-root")
        with open(script, "w") as f:
            f.write("#!/bin/sh\\n")
            f.write("cat %s/share/oci-mid/deps.txt\\n" % spec["oci-mid"].prefix)
        os.chmod(script, 0o755)
'''

_MANY = '''\
class {cls}(Package):
    """Independent small package {index} of a generated set, for benchmarks."""

    homepage = "https://example.com/oci-many"
    has_code = False

    version("1.0")
{deps}
    data_size = {data_size}

    def install(self, spec, prefix):
        share = join_path(prefix, "share", "{name}")
        mkdirp(share)
        with open(join_path(share, "data.bin"), "wb") as f:
            f.write(random.Random("{name}").randbytes(self.data_size))
        with open(join_path(share, "prefix.txt"), "w") as f:
            f.write("prefix=%s\\n" % prefix)
'''


_STUB_COMPILER = '''\
class OciStubCompiler(Package):
    """Not a compiler: Spack 1.x's solver insists that at least one compiler be configured,
    even for packages that use none, and looks only among packages tagged "compiler". This
    one is configured as an external with no executables, so the solver finds a compiler in
    the configuration but can use it for nothing (and nothing here needs one)."""

    homepage = "https://example.com/oci-stub-compiler"
    has_code = False
    tags = ["compiler"]

    version("1.0")

    cc = None
    cxx = None
    fortran = None
    verbose_flags = ""

    def install(self, spec, prefix):
        raise InstallError("oci-stub-compiler is external only")
'''


#: A wrapper of ``bin/spack`` that lets Spack 1.1.0 read build-cache indexes from ``oci+http://``
#: mirrors (used when :attr:`SpackEnv.patch_oci_http_index` is set).
OCI_HTTP_INDEX_PATCH = '''\
"""Run Spack with build-cache index fetching fixed for oci+http:// mirrors.

Spack 1.1.0, lib/spack/spack/binary_distribution.py, BinaryCacheIndex._fetch_and_cache_index:
line 462 takes the mirror URL's scheme and line 464 tests `scheme != "oci"`, so for
"oci+http" it first checks that `<url>/v3/manifests/index/index.manifest.json` exists with
spack.util.web.url_exists (line 466), whose urllib has no handler for oci+http ("unknown url
type: oci+http", util/web.py lines 477-484, logged only with -d), so it returns False and
_fetch_and_cache_index returns False (line 467): the index is silently never fetched.
Past that check, get_index_fetcher (line 2826) would not pick OCIIndexFetcher either (line
2829 `scheme == "oci"`). This wrapper treats "oci+http" as "oci" in both places, then runs
Spack's main.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["SPACK_ROOT"], "lib", "spack"))

import spack.binary_distribution as bd  # noqa: E402
import spack.util.web as web  # noqa: E402

_url_exists = web.url_exists
_get_index_fetcher = bd.get_index_fetcher


def url_exists(url, curl=None):
    if str(url).startswith("oci+http://"):
        return True  # as for oci://: no existence check, the OCI fetcher handles a 404
    return _url_exists(url, curl)


def get_index_fetcher(scheme, url_and_version, cache_entry):
    if scheme == "oci+http":
        scheme = "oci"
    return _get_index_fetcher(scheme, url_and_version, cache_entry)


web.url_exists = url_exists
bd.get_index_fetcher = get_index_fetcher

from spack.main import main  # noqa: E402

sys.exit(main())
'''


def many_name(index: int) -> str:
    """Name of generated package ``index``: ``oci-many-<index>``."""
    return f"oci-many-{index}"


def write_package(repo_dir: Path, name: str, body: str) -> Path:
    """Write ``packages/<dir>/package.py`` of package ``name`` (``body`` after the header)."""
    pkg_dir = repo_dir / "packages" / _pkg_dir(name)
    pkg_dir.mkdir(parents=True, exist_ok=True)
    path = pkg_dir / "package.py"
    path.write_text(_HEADER + "\n" + body)
    return path


def write_many_packages(
    repo_dir: Path,
    count: int,
    *,
    start: int = 0,
    data_size: int = 4096,
    depends_on: Sequence[str] = (),
) -> list[str]:
    """Write packages ``oci-many-<start>`` .. ``oci-many-<start+count-1>``; return their names.

    Each installs ``data_size`` pseudo-random bytes and a file naming its prefix; ``depends_on``
    (names in this repository, e.g. ``["oci-leaf"]``) become link+run dependencies of each.
    """
    names = []
    for i in range(start, start + count):
        name = many_name(i)
        deps = "".join(f'\n    depends_on("{d}", type=("link", "run"))\n' for d in depends_on)
        write_package(
            repo_dir,
            name,
            _MANY.format(
                cls=_class_name(name), index=i, name=name, deps=deps, data_size=int(data_size)
            ),
        )
        names.append(name)
    return names


def write_test_repo(
    repo_dir: Path,
    *,
    many: int = 0,
    leaf_data_sizes: Sequence[int] = (65536, 4096, 1),
    many_data_size: int = 4096,
) -> Path:
    """Write the ``ocitest`` repository at ``repo_dir`` (which must end in spack_repo/ocitest)."""
    if repo_dir.parent.name != "spack_repo":
        raise ValueError(f"an API v2 repository must be at .../spack_repo/<namespace>: {repo_dir}")
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "repo.yaml").write_text(f"repo:\n  namespace: {NAMESPACE}\n  api: v2.0\n")
    write_package(repo_dir, LEAF, _LEAF.format(data_sizes=tuple(int(s) for s in leaf_data_sizes)))
    write_package(repo_dir, MID, _MID)
    write_package(repo_dir, ROOT, _ROOT)
    write_package(repo_dir, STUB_COMPILER, _STUB_COMPILER)
    if many:
        write_many_packages(repo_dir, many, data_size=many_data_size)
    return repo_dir


# ---------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------


def _yaml_str(value: str | os.PathLike[str]) -> str:
    return json.dumps(os.fspath(value))  # JSON strings are valid YAML scalars


@dataclass
class SpackEnv:
    """An isolated Spack: config scope, caches, install tree and test repository in ``root``."""

    root: Path
    spack_root: Path
    python: str
    #: extra variables for every command (e.g. ``SPACK_OCI_RS=1`` once the patch exists)
    extra_env: dict[str, str] = field(default_factory=dict)
    #: ``(argv after "spack", seconds, exit code)`` of every command run, in order
    history: list[tuple[list[str], float, int]] = field(default_factory=list)
    #: Run Spack through :data:`OCI_HTTP_INDEX_PATCH` (a wrapper of bin/spack, written to
    #: ``root``) so that it reads build-cache indexes from ``oci+http://`` mirrors. Spack 1.1.0
    #: only does for ``oci://`` (see the wrapper's docstring); off by default.
    patch_oci_http_index: bool = False

    # -- layout -----------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def system_dir(self) -> Path:
        return self.root / "system"

    @property
    def repo_dir(self) -> Path:
        return self.root / "repos" / "spack_repo" / NAMESPACE

    @property
    def store(self) -> Path:
        """The install tree's root."""
        return self.root / "store"

    @property
    def spack_exe(self) -> Path:
        return self.spack_root / "bin" / "spack"

    def command(self) -> list[str]:
        """The argv prefix that runs Spack (bin/spack, or the patching wrapper)."""
        if not self.patch_oci_http_index:
            return [str(self.spack_exe)]
        wrapper = self.root / "spack-oci-http-index.py"
        if not wrapper.exists() or wrapper.read_text() != OCI_HTTP_INDEX_PATCH:
            wrapper.write_text(OCI_HTTP_INDEX_PATCH)
        return [self.python, str(wrapper)]

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        spack_root: Path | None = None,
        python: str | None = None,
        many: int = 0,
        store: Path | None = None,
        builtin_repo: Path | None = None,
        config: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        leaf_data_sizes: Sequence[int] = (65536, 4096, 1),
        many_data_size: int = 4096,
        repo_from: SpackEnv | None = None,
        ca_file: Path | None = None,
        patch_oci_http_index: bool = False,
    ) -> SpackEnv:
        """Write config scope, caches and test repository under ``root`` (created if needed).

        ``spack_root`` defaults to ``$SPACK_ROOT``; ``python`` to ``$SPACK_PYTHON`` or this
        interpreter. ``store`` moves the install tree (default ``root/store``): two
        environments with different stores sharing a mirror test relocation.
        ``builtin_repo`` adds a local checkout of Spack's builtin packages
        (``.../spack_repo/builtin``) after the test repository. ``config`` adds files to the
        scope: ``{"packages.yaml": "packages: ..."}``. ``repo_from`` reuses another
        environment's test repository (same package hashes) instead of writing a new one.
        ``ca_file`` is trusted for HTTPS (``config:ssl_certs``), e.g. a test registry's CA.
        ``patch_oci_http_index``: see :attr:`patch_oci_http_index`.
        """
        spack_root = spack_root or spack_root_from_env()
        if spack_root is None:
            raise RuntimeError("no Spack: pass spack_root or set SPACK_ROOT")
        root = Path(root).absolute()
        env = cls(
            root=root,
            spack_root=Path(spack_root).absolute(),
            python=python or spack_python(),
            extra_env=dict(extra_env or {}),
        )
        for d in (env.config_dir, env.cache_dir, env.system_dir):
            d.mkdir(parents=True, exist_ok=True)
        if repo_from is not None:
            repo_dir = repo_from.repo_dir
        else:
            repo_dir = write_test_repo(
                env.repo_dir,
                many=many,
                leaf_data_sizes=leaf_data_sizes,
                many_data_size=many_data_size,
            )
        store = Path(store).absolute() if store else env.store
        if store != env.store:
            # keep env.store meaningful: a link from root/store to the real install tree
            store.mkdir(parents=True, exist_ok=True)
            env.store.symlink_to(store, target_is_directory=True)
            store_root = store
        else:
            store_root = env.store

        repos = [f"  {NAMESPACE}: {_yaml_str(repo_dir)}"]
        if builtin_repo is not None:
            repos.append(f"  builtin: {_yaml_str(Path(builtin_repo).absolute())}")
        files = {
            "repos.yaml": "repos::\n" + "\n".join(repos) + "\n",
            "packages.yaml": textwrap.dedent(
                f"""\
                packages:
                  {STUB_COMPILER}:
                    buildable: false
                    externals:
                    - spec: {STUB_COMPILER}@1.0
                      prefix: {_yaml_str(root / "no-compiler")}
                      extra_attributes:
                        compilers: {{}}
                """
            ),
            "bootstrap.yaml": textwrap.dedent(
                f"""\
                bootstrap:
                  enable: false
                  root: {_yaml_str(root / "bootstrap")}
                """
            ),
            "config.yaml": textwrap.dedent(
                f"""\
                config:
                  install_tree:
                    root: {_yaml_str(store_root)}
                  build_stage::
                  - {_yaml_str(root / "stage")}
                  test_stage: {_yaml_str(root / "test-stage")}
                  source_cache: {_yaml_str(root / "source-cache")}
                  misc_cache: {_yaml_str(root / "misc-cache")}
                  connect_timeout: 10
                  build_jobs: 4
                """
            ),
        }
        if ca_file is not None:
            files["config.yaml"] += f"  ssl_certs: {_yaml_str(Path(ca_file).absolute())}\n"
        files.update(config or {})
        for name, text in files.items():
            (env.config_dir / name).write_text(text)
        # No mirrors but the ones the tests add: not even Spack's default source mirror. This
        # is in the system scope because `spack mirror add` rewrites the user scope's
        # mirrors.yaml and drops the `::` there.
        (env.system_dir / "mirrors.yaml").write_text("mirrors:: {}\n")
        if patch_oci_http_index:
            env.patch_oci_http_index = True
        return env

    def add_many_packages(
        self, count: int, *, start: int = 0, data_size: int = 4096, depends_on: Sequence[str] = ()
    ) -> list[str]:
        """Add ``oci-many-<i>`` packages to the repository (see :func:`write_many_packages`)."""
        return write_many_packages(
            self.repo_dir, count, start=start, data_size=data_size, depends_on=depends_on
        )

    # -- running Spack ----------------------------------------------------------------------

    def environ(self) -> dict[str, str]:
        """The process environment Spack runs with."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SPACK_") and k not in _DROPPED_VARS
        }
        no_proxy = ",".join(
            x for x in ("127.0.0.1", "localhost", "::1", os.environ.get("no_proxy", "")) if x
        )
        env.update(
            SPACK_ROOT=str(self.spack_root),
            SPACK_PYTHON=self.python,
            SPACK_USER_CONFIG_PATH=str(self.config_dir),
            SPACK_USER_CACHE_PATH=str(self.cache_dir),
            SPACK_SYSTEM_CONFIG_PATH=str(self.system_dir),
            SPACK_COLOR="never",
            PYTHONPYCACHEPREFIX=str(pycache_dir()),
            no_proxy=no_proxy,
            NO_PROXY=no_proxy,
        )
        env.update(self.extra_env)
        return env

    def shell_exports(self) -> str:
        """``export ...`` lines to use this environment from a shell."""
        keys = (
            "SPACK_ROOT",
            "SPACK_PYTHON",
            "SPACK_USER_CONFIG_PATH",
            "SPACK_USER_CACHE_PATH",
            "SPACK_SYSTEM_CONFIG_PATH",
            "PYTHONPYCACHEPREFIX",
            *self.extra_env,
        )
        environ = self.environ()
        return "\n".join(f"export {k}={shlex.quote(environ[k])}" for k in keys)

    def run(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> SpackRun:
        """Run ``spack ARGS...``; raise :class:`SpackCommandError` if it fails and ``check``."""
        argv = [os.fspath(a) for a in args]
        cmd = [*self.command(), *argv]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd,
            env=self.environ(),
            cwd=cwd or self.root,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        duration = time.perf_counter() - start
        self.history.append((argv, duration, proc.returncode))
        result = SpackRun(proc.args, proc.returncode, proc.stdout, proc.stderr)
        result.duration = duration
        if check and proc.returncode != 0:
            raise SpackCommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
        return result

    # -- commands ---------------------------------------------------------------------------

    def version(self) -> str:
        return self.run("--version").stdout.strip()

    def install(
        self,
        *specs: str,
        cache_only: bool = False,
        no_cache: bool = False,
        check_signature: bool = False,
        extra: Sequence[str] = (),
    ) -> SpackRun:
        """``spack install [--cache-only --no-check-signature | --no-cache] SPECS...``

        From a cache, signatures are not checked unless ``check_signature`` (the mirrors made by
        :meth:`mirror_add` are unsigned anyway).
        """
        args = ["install"]
        if cache_only:
            args.append("--cache-only")
            if not check_signature:
                args.append("--no-check-signature")
        if no_cache:
            args.append("--no-cache")
        return self.run(*args, *extra, *specs)

    def uninstall_all(self, *specs: str) -> SpackRun:
        """``spack uninstall -y -a [SPECS]``: everything by default."""
        return self.run("uninstall", "-y", "-a", *specs)

    def find(self, *specs: str, extra: Sequence[str] = ()) -> SpackRun:
        return self.run("find", *extra, *specs)

    def find_json(self, *specs: str) -> list[dict[str, object]]:
        """Installed specs as Spack's JSON (``spack find --json``); [] when none match."""
        proc = self.run("find", "--json", *specs, check=False)
        if proc.returncode != 0:
            if "No package matches" in proc.stderr + proc.stdout:
                return []
            raise SpackCommandError(
                [*self.command(), "find", "--json", *specs],
                proc.returncode,
                proc.stdout,
                proc.stderr,
            )
        out = proc.stdout.strip()
        return json.loads(out) if out else []

    def installed_names(self) -> list[str]:
        """Names of the installed packages, sorted."""
        return sorted(str(s["name"]) for s in self.find_json())

    def location(self, spec: str) -> Path:
        """Install prefix of an installed spec (``spack location -i``)."""
        return Path(self.run("location", "-i", spec).stdout.strip())

    def mirror_add(
        self, name: str, url: str, *, unsigned: bool = True, extra: Sequence[str] = ()
    ) -> SpackRun:
        """``spack mirror add [--unsigned] NAME URL``, e.g. URL ``oci+http://HOST:PORT/repo``."""
        args = ["mirror", "add"]
        if unsigned:
            args.append("--unsigned")
        return self.run(*args, *extra, name, url)

    def mirror_remove(self, name: str, *, check: bool = True) -> SpackRun:
        """``spack mirror remove --scope user NAME``: the scope named, because Spack develop
        without it writes ``mirrors: {}`` into every scope, Spack's own tree included."""
        return self.run("mirror", "remove", "--scope", "user", name, check=check)

    def push(
        self,
        mirror: str,
        *specs: str,
        force: bool = False,
        update_index: bool = False,
        base_image: str | None = None,
        tag: str | None = None,
        unsigned: bool = True,
        jobs: int | None = None,
        extra: Sequence[str] = (),
    ) -> SpackRun:
        """``spack buildcache push [--unsigned] [--force] [--update-index] [--base-image REF]
        [--tag TAG] [-j N] MIRROR SPECS...``"""
        args = ["buildcache", "push"]
        if unsigned:
            args.append("--unsigned")
        if force:
            args.append("--force")
        if update_index:
            args.append("--update-index")
        if base_image:
            args += ["--base-image", base_image]
        if tag:
            args += ["--tag", tag]
        if jobs is not None:
            args += ["-j", str(jobs)]
        return self.run(*args, *extra, mirror, *specs)

    def update_index(self, mirror: str) -> SpackRun:
        """``spack buildcache update-index MIRROR``"""
        return self.run("buildcache", "update-index", mirror)

    def buildcache_list(
        self, *specs: str, allarch: bool = True, long: bool = True, extra: Sequence[str] = ()
    ) -> SpackRun:
        """``spack buildcache list [-a] [-l] [SPECS]``.

        ``-a`` (all architectures) is on by default: without a compiler, Spack concretizes
        the test packages for the generic family target (``x86_64``), and plain ``buildcache
        list`` shows only specs compatible with the host's exact target (``x86_64_v4``...).
        ``-l`` prefixes each spec with its short hash.
        """
        args = ["buildcache", "list"]
        if allarch:
            args.append("-a")
        if long:
            args.append("-l")
        return self.run(*args, *extra, *specs)

    def buildcache_specs(self, *specs: str) -> list[tuple[str, str]]:
        """``(short hash, name@version)`` of each spec ``spack buildcache list -al`` shows."""
        return parse_spec_list(self.buildcache_list(*specs).stdout)

    def clear_download_caches(self) -> None:
        """Forget what Spack downloaded from mirrors, so the next command fetches again.

        Spack's OCI code keeps the blobs it fetches (spec configs during push and
        update-index, tarballs during installs) in ``config:source_cache`` under
        ``blobs/sha256/``, and reuses them ("Using cached archive"); remote indexes are cached
        in the misc cache. Call this before timing installs from a cache.
        """
        shutil.rmtree(self.root / "source-cache", ignore_errors=True)
        shutil.rmtree(self.root / "misc-cache" / "indices", ignore_errors=True)

    def write_environment(
        self, directory: Path, specs: Iterable[str], *, unify: bool | str = True
    ) -> Path:
        """Write an anonymous Spack environment (``spack.yaml``) with ``specs`` into
        ``directory``; use it with ``env.run("-e", directory, "install")``."""
        directory.mkdir(parents=True, exist_ok=True)
        unify_text = json.dumps(unify) if isinstance(unify, str) else str(unify).lower()
        lines = ["spack:", "  specs:"]
        lines += [f"  - {_yaml_str(s)}" for s in specs]
        lines += ["  concretizer:", f"    unify: {unify_text}", "  view: false"]
        (directory / "spack.yaml").write_text("\n".join(lines) + "\n")
        return directory

    def timings(self) -> list[tuple[str, float]]:
        """``("spack ARGS", seconds)`` of every command run so far."""
        return [(shlex.join(["spack", *argv]), secs) for argv, secs, _ in self.history]


def parse_spec_list(output: str) -> list[tuple[str, str]]:
    """``(short hash, name@version)`` pairs from ``spack find -l`` / ``buildcache list -l``
    output (header lines skipped), sorted by name."""
    pairs = []
    for line in output.splitlines():
        words = line.split()
        if len(words) < 2 or line.startswith(("--", "==>")):
            continue
        pairs.append((words[0], words[1]))
    return sorted(pairs, key=lambda p: (p[1], p[0]))


def spack(
    *args: str | os.PathLike[str],
    env: SpackEnv,
    check: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> SpackRun:
    """Run ``spack ARGS...`` in ``env`` (a :class:`SpackEnv`); same as ``env.run(...)``."""
    return env.run(*args, check=check, timeout=timeout, input=input)


def _main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--many", type=int, default=0, help="also generate N oci-many-<i>")
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"warning: {reason}", file=sys.stderr)
    env = SpackEnv.create(args.directory, many=args.many)
    print(env.shell_exports())
    print(f"# then: {env.spack_exe} install {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
