"""The zero-patch Spack plugin of spack-oci-rs.

Spack (v1.0 and later) imports every entry point of the group ``spack.config`` while it builds
its configuration, on every command. Ours is :func:`spack_config`: it registers the
``config:oci_*`` schema keys and arranges for Spack's OCI internals to dispatch to the engine
(``spack_oci_rs.spack``) when ``config:oci_backend`` is ``rust`` — the same dispatch points as
``spack_patch/``, installed at run time into an unmodified Spack tree:

=====================================  ===================================================
Spack internal                         with ``config:oci_backend:rust``
=====================================  ===================================================
``binary_distribution.make_uploader``   ``RustOCIUploader`` for OCI mirrors (push, autopush,
                                        ``spack ci``)
``binary_distribution._oci_update_index``  ``update_index`` (update-index, push --update-index)
``binary_distribution.get_index_fetcher``  ``RustOCIIndexFetcher`` (also ``oci+http://``)
``BinaryCacheIndex._fetch_and_cache_index``  lets ``oci+http://`` indexes through
``binary_distribution.download_tarball``  the OCI manifest request answered by the engine
``OCIRegistryFetchStrategy.fetch``       ``fetch_to_stage`` (blob downloads)
``installer.PackageInstaller._install``  ``prefetch_for_requests`` first
``new_installer.PackageInstaller._installer``  ``prefetch_specs`` first
=====================================  ===================================================

A module is patched when Spack imports it (a post-import hook), so a command that never
touches build caches pays only for this module. This package is separate from
``spack_oci_rs`` so that importing it never loads the native module: with the toggle at its
default (``python``), a broken or missing engine cannot affect Spack. Safe by construction: on
an unknown Spack version, on a tree patched with ``spack_patch/``, or when an internal it
wraps has changed shape, nothing is dispatched (with one warning line when the toggle asks for
``rust``), and no exception of this module ever escapes into Spack.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["SCHEMA", "STATE", "backend", "spack_config", "status", "toggle"]

#: Spack series the dispatch was written for (read from each version's code): v1.0.x,
#: v1.1.x and develop (1.2.0.dev0).
SUPPORTED_SERIES = ((1, 0), (1, 1), (1, 2))

#: The ``config:`` keys of spack-oci-rs, added to Spack's schema so that Spack validates them.
SCHEMA: dict[str, dict[str, Any]] = {
    "oci_backend": {"type": "string", "enum": ["python", "rust"]},
    "oci_docker_config": {"type": "boolean"},
    "oci_compression": {"type": "string", "enum": ["spack", "fast"]},
    "oci_sign_key": {"type": "string"},
    "oci_trusted_keys": {"type": "array", "items": {"type": "string"}},
}

#: What the plugin did in this process (``status()`` reports it).
STATE: dict[str, Any] = {
    "loaded": False,
    "mode": None,
    "points": [],
    "disabled": None,
    "seconds": 0.0,  # spent in the entry point and in patching modules
}

_PASS = object()


class _Unchanged(Exception):
    """An internal the plugin wraps is not what it was written for."""


def status() -> dict[str, Any]:
    """What the plugin did: loaded, mode (``plugin``, ``patched``, ``disabled``), the active
    dispatch points, why it is disabled, the Spack version."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in STATE.items()}


def spack_config() -> None:
    """The ``spack.config`` entry point: install the dispatch; no config scope of its own."""
    start = time.perf_counter()
    STATE["loaded"] = True
    try:
        _install()
    except Exception as e:  # never break Spack
        _disable(f"{type(e).__name__}: {e}")
    STATE["seconds"] += time.perf_counter() - start


def _install() -> None:
    import spack
    import spack.oci

    version = tuple(spack.spack_version_info)
    STATE["spack_version"] = spack.spack_version
    if hasattr(spack.oci, "rust_backend"):
        STATE["mode"] = "patched"  # spack_patch/ applied: its own dispatch, no double one
        return
    if version[:2] not in SUPPORTED_SERIES:
        _disable(f"Spack {spack.spack_version} is not a version spack-oci-rs supports")
    else:
        _register_schema()
        STATE["mode"] = "plugin"
    _HOOK.watch(_PATCHERS)


def _register_schema() -> None:
    import spack.schema.config

    section = spack.schema.config.properties["config"]["properties"]
    for key, schema in SCHEMA.items():
        section.setdefault(key, schema)


def _disable(reason: str) -> None:
    """Dispatch nothing from now on (the wrappers already installed let Spack's code run)."""
    if STATE["disabled"] is None:
        STATE["disabled"] = reason
    STATE["mode"] = "disabled"


def _warn_if_rust() -> None:
    """Say once why the engine is not used, if the toggle asks for it. Called when Spack
    imports a build-cache module, not at start-up: the user's config scopes are not read
    yet while Spack loads its entry points."""
    if STATE.get("warned") or STATE["disabled"] is None:
        return
    STATE["warned"] = True
    try:
        import spack.llnl.util.tty as tty

        if toggle() == "rust":
            tty.warn(
                f"spack-oci-rs is not active ({STATE['disabled']}); "
                "Spack uses its own Python OCI backend"
            )
    except Exception:
        pass


def toggle() -> str:
    """``config:oci_backend`` (``python`` when unset)."""
    import spack.config

    return str(spack.config.get("config:oci_backend", "python"))


def backend() -> Any:
    """The engine's Spack adapter when the toggle is ``rust`` and the plugin is active."""
    if STATE["mode"] != "plugin":
        if STATE["mode"] == "disabled":
            _warn_if_rust()
        return None
    if toggle() != "rust":
        return None
    try:
        import spack_oci_rs.spack as adapter
    except ImportError as e:
        import spack.error

        raise spack.error.SpackError(
            f"config:oci_backend is 'rust' but spack_oci_rs cannot be imported ({e}); install "
            f"it with `{sys.executable} -m pip install spack-oci-rs`, or run "
            "`spack config add config:oci_backend:python`"
        ) from e
    return adapter


# -- wrapping Spack's internals ---------------------------------------------------------------


def _wrap(
    owner: Any,
    name: str,
    params: Sequence[str | tuple[str, ...]],
    dispatch: Callable[[Any, Any, dict[str, Any]], Any],
) -> None:
    """Replace ``owner.name`` by a function that asks ``dispatch(adapter, original, args)``
    first when the toggle is ``rust`` (``_PASS``: let Spack's own code run).

    ``params`` are the parameter names the original must have, in order (a tuple: any of
    these names); anything else is a changed internal and nothing is installed.
    """
    original = getattr(owner, name, None)
    if original is None:
        raise _Unchanged(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    signature = inspect.signature(original)
    names = list(signature.parameters)
    wanted = [p if isinstance(p, tuple) else (p,) for p in params]
    if len(names) != len(wanted) or any(n not in w for n, w in zip(names, wanted, strict=True)):
        raise _Unchanged(f"{owner.__name__}.{name}{tuple(names)} has changed")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        adapter = backend()
        if adapter is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            result = dispatch(adapter, original, dict(bound.arguments))
            if result is not _PASS:
                return result
        return original(*args, **kwargs)

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = name
    wrapper.__doc__ = original.__doc__
    setattr(owner, name, wrapper)
    where = owner.__name__ if inspect.ismodule(owner) else f"{owner.__module__}.{owner.__name__}"
    STATE["points"].append(f"{where}.{name}")


def _is_oci_url(url: str) -> bool:
    import spack.oci.image

    is_oci = getattr(spack.oci.image, "is_oci_url", None)  # v1.1+: oci:// and oci+http://
    return bool(is_oci(url)) if is_oci else url.startswith("oci://")


def _second(args: dict[str, Any]) -> Any:
    """The mirror argument, named ``url_and_version`` (v1.0, v1.1) or ``mirror_metadata``."""
    return args.get("url_and_version", args.get("mirror_metadata"))


_MIRROR_ARG = ("url_and_version", "mirror_metadata")


def _patch_binary_distribution(bd: Any) -> None:
    _wrap(
        bd,
        "make_uploader",
        ["mirror", "force", "update_index", "signing_key", "base_image"],
        lambda rs, _o, a: (
            rs.RustOCIUploader(a["mirror"], a["force"], a["update_index"], a["base_image"])
            if _is_oci_url(a["mirror"].push_url)
            else _PASS
        ),
    )
    _wrap(
        bd,
        "_oci_update_index",
        ["image_ref", "tmpdir", "pool"],
        lambda rs, _o, a: rs.update_index(a["image_ref"], a["tmpdir"]),
    )
    _wrap(
        bd,
        "get_index_fetcher",
        ["scheme", _MIRROR_ARG, "cache_entry"],
        lambda rs, _o, a: (
            rs.RustOCIIndexFetcher(_second(a), a["cache_entry"].get("index_hash", None))
            if a["scheme"] in ("oci", "oci+http")
            else _PASS
        ),
    )
    _wrap(
        bd.BinaryCacheIndex,
        "_fetch_and_cache_index",
        ["self", _MIRROR_ARG, "cache_entry"],
        lambda _rs, orig, a: _fetch_oci_http_index(bd, orig, a),
    )
    _wrap(
        bd,
        "download_tarball",
        ["spec", "unsigned", "mirrors_for_spec"],
        lambda rs, orig, a: _download_tarball(rs, orig, a),
    )


def _fetch_oci_http_index(bd: Any, original: Callable[..., Any], args: dict[str, Any]) -> Any:
    """Spack checks that an index exists with ``web_util.url_exists`` for every scheme but
    ``oci``, and urllib cannot open ``oci+http://``: let the (engine's) index fetcher decide."""
    if not str(_second(args).url).startswith("oci+http://"):
        return _PASS
    with _replaced(bd.web_util, "url_exists", lambda url, *a, **k: True):
        return original(**args)


def _download_tarball(adapter: Any, original: Callable[..., Any], args: dict[str, Any]) -> Any:
    """Spack's own ``download_tarball`` (mirror order, checks, stages), with the one request
    its OCI branch makes itself — the image manifest — answered by the engine (from the
    install prefetch when it had the image); blobs come through the fetch strategy."""
    import spack.oci.opener

    opener = _ManifestOpener(spack.oci.opener.urlopen, adapter, args["unsigned"])
    with _replaced(spack.oci.opener, "urlopen", opener):
        return original(**args)


class _ManifestOpener:
    """``spack.oci.opener.urlopen`` for the duration of a ``download_tarball``: manifest GETs
    go to the engine, anything else to Spack's opener."""

    def __init__(self, urlopen: Callable[..., Any], adapter: Any, unsigned: bool | None) -> None:
        self._urlopen = urlopen
        self._adapter = adapter
        self._unsigned = unsigned  # download_tarball's own: --no-check-signature

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(request, urllib.request.Request) and request.get_method() == "GET":
            response = self._adapter.manifest_response(request.full_url, self._unsigned)
            if response is not None:
                return response
        return self._urlopen(request, *args, **kwargs)


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _patch_fetch_strategy(fs: Any) -> None:
    import spack.oci.opener

    cls = fs.OCIRegistryFetchStrategy
    if not callable(getattr(fs, "_needs_stage", None)):
        raise _Unchanged("fetch_strategy._needs_stage is missing")

    def dispatch(adapter: Any, original: Callable[..., Any], args: dict[str, Any]) -> Any:
        strategy = args["self"]
        if strategy._urlopen is not spack.oci.opener.urlopen:
            return _PASS  # an opener injected by the caller (Spack's tests): Spack's path
        return fs._needs_stage(adapter.fetch_to_stage)(strategy)

    _wrap(cls, "fetch", ["self"], dispatch)


def _patch_installer(inst: Any) -> None:
    def dispatch(adapter: Any, _orig: Callable[..., Any], args: dict[str, Any]) -> Any:
        adapter.prefetch_for_requests(args["self"].build_requests)
        return _PASS

    if not callable(getattr(inst.BuildRequest, "traverse_dependencies", None)):
        raise _Unchanged("installer.BuildRequest.traverse_dependencies is missing")
    _wrap(inst.PackageInstaller, "_install", ["self"], dispatch)


def _patch_new_installer(new: Any) -> None:
    def dispatch(adapter: Any, _orig: Callable[..., Any], args: dict[str, Any]) -> Any:
        installer = args["self"]
        graph = getattr(installer, "build_graph", installer)  # develop / v1.1
        found = installer.binary_cache_for_spec
        policy = getattr(installer, "dependencies_policy", "auto")
        specs = [
            spec for key, spec in graph.nodes.items() if found.get(key) and policy != "source_only"
        ]
        adapter.prefetch_specs(specs, getattr(installer, "unsigned", None))
        return _PASS

    _wrap(new.PackageInstaller, "_installer", ["self"], dispatch)


#: Spack module -> the function installing its dispatch points.
_PATCHERS: dict[str, Callable[[Any], None]] = {
    "spack.binary_distribution": _patch_binary_distribution,
    "spack.fetch_strategy": _patch_fetch_strategy,
    "spack.installer": _patch_installer,
    "spack.new_installer": _patch_new_installer,
}


# -- the post-import hook ---------------------------------------------------------------------


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs a patcher right after Spack has executed one of the watched modules."""

    def __init__(self) -> None:
        self._patchers: dict[str, Callable[[Any], None]] = {}

    def watch(self, patchers: dict[str, Callable[[Any], None]]) -> None:
        for name, patcher in patchers.items():
            if name in sys.modules:
                _patch(patcher, sys.modules[name])
            else:
                self._patchers[name] = patcher
        if self._patchers and self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        patcher = self._patchers.pop(fullname, None)
        if patcher is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            _patch(patcher, module)

        loader.exec_module = exec_and_patch  # type: ignore[union-attr]
        return spec


def _patch(patcher: Callable[[Any], None], module: Any) -> None:
    start = time.perf_counter()
    if STATE["mode"] == "plugin":
        try:
            patcher(module)
        except Exception as e:  # a changed internal: dispatch nothing at all
            _disable(f"{module.__name__}: {e}")
    if STATE["mode"] == "disabled" and module.__name__ == "spack.binary_distribution":
        _notice(module)
    STATE["seconds"] += time.perf_counter() - start


def _notice(bd: Any) -> None:
    """Disabled: the build-cache entry points only say once why the engine is not used (if
    the toggle asks for it), then run Spack's code. Said when a build-cache operation runs,
    not while Spack loads its entry points, when the user's config is not read yet."""

    def noticed(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _warn_if_rust()
            return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    for name in ("make_uploader", "_oci_update_index", "get_index_fetcher", "download_tarball"):
        original = getattr(bd, name, None)
        if callable(original) and not hasattr(original, "__wrapped__"):
            setattr(bd, name, noticed(original))


_HOOK = _PostImportHook()
