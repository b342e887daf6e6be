"""The adapter between Spack and the engine.

Spack calls into this module when ``config:oci_backend`` is ``rust``: through the plugin
(``spack_oci_rs_plugin``, on an unmodified Spack v1.0.2, v1.1.0 or develop) or through a
tree patched with ``spack_patch/``. Spack keeps its spec logic (tags, spec dicts, environment
modifications, the index database, buildinfo YAML); the engine does transfers, auth, tarballs,
digests, concurrency and retries, with one engine call per command.

Importing this module imports Spack: it is only meant to be imported from within Spack.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import functools
import io
import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import spack.binary_distribution as bindist
import spack.config
import spack.error
import spack.hash_types as ht
import spack.llnl.util.tty as tty
import spack.oci.image
import spack.oci.oci
import spack.oci.opener
import spack.spec
import spack.user_environment
import spack.util.spack_yaml as syaml
from spack import traverse

import spack_oci_rs as engine
from spack_oci_rs import spack_index, spack_sign

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    import spack.mirrors.mirror
    from spack.oci.image import ImageReference

__all__ = [
    "RustOCIIndexFetcher",
    "RustOCIUploader",
    "download_tarball",
    "fetch_to_stage",
    "manifest_response",
    "prefetch_for_install",
    "prefetch_for_requests",
    "prefetch_specs",
    "update_index",
]

#: Clients by their settings, so that one Spack process reuses connections and tokens.
_CLIENTS: dict[tuple[Any, ...], engine.Client] = {}

#: Image reference -> (config digest, layer digest) of images prefetched for an install.
_PREFETCHED: dict[str, tuple[str, str]] = {}

#: Prefetched images whose signature was verified (config:oci_trusted_keys).
_VERIFIED: set[str] = set()


#: Mirrors (registry hosts) already reported unreachable in this process.
_UNREACHABLE: set[str] = set()


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A bug of ours inside an engine call becomes one Spack error line naming spack-oci-rs
    (Spack's own errors, those Spack expects from the function, e.g. ``FetchIndexError``, and
    the engine's registry errors pass as they are)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (spack.error.SpackError, bindist.FetchIndexError, engine.OciError):
            raise
        except Exception as e:
            raise spack.error.SpackError(
                f"spack-oci-rs: internal error in {fn.__qualname__}: {type(e).__name__}: {e}",
                "please report it; `spack config add config:oci_backend:python` avoids it",
            ) from e

    return wrapper


def is_oci_url(url: str) -> bool:
    """Spack's ``is_oci_url`` (v1.1+: ``oci://`` and ``oci+http://``; v1.0: ``oci://``)."""
    found = getattr(spack.oci.image, "is_oci_url", None)
    return bool(found(url)) if found else url.startswith("oci://")


def image_ref_from_url(url: str) -> ImageReference:
    """Spack's ``ImageReference.from_url`` (which v1.0 lacks: there, ``oci://`` only)."""
    from_url = getattr(spack.oci.image.ImageReference, "from_url", None)
    if from_url is not None:
        return from_url(url)
    if not url.startswith("oci://"):
        raise ValueError(f"Invalid OCI URL: {url}")
    return spack.oci.image.ImageReference.from_string(url[len("oci://") :])


def ref_string(ref: ImageReference, *, tag: bool = True) -> str:
    """A Spack ``ImageReference`` as an engine reference (``oci://`` or ``oci+http://``)."""
    scheme = "oci+http" if getattr(ref, "scheme", "https") == "http" else "oci"
    s = f"{scheme}://{ref.domain}/{ref.name}"
    if tag and ref.tag:
        s += f":{ref.tag}"
    if tag and ref.digest:
        s += f"@{ref.digest}"
    return s


class _TtyHandler(logging.Handler):
    """Engine log records as Spack debug messages (``spack -d``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tty.debug(f"spack_oci_rs: {record.getMessage()}")
        except Exception:
            self.handleError(record)


def _bridge_logging() -> None:
    """With ``spack -d``, show the engine's requests (method, URL, status, time) and retries
    through Spack's ``tty``; otherwise only its warnings."""
    logger = logging.getLogger("spack_oci_rs")
    if any(isinstance(h, _TtyHandler) for h in logger.handlers):
        return
    logger.addHandler(_TtyHandler())
    logger.setLevel(logging.DEBUG if tty.is_debug() else logging.WARNING)
    logger.propagate = False
    engine.reset_logging()


def _access_token(domain: str) -> str | None:
    """A mirror's ``access_token`` / ``access_token_variable`` for an OCI URL on ``domain``,
    push settings first (as Spack looks up ``access_pair``)."""
    import spack.mirrors.mirror

    for mirror in spack.mirrors.mirror.MirrorCollection().values():
        for direction in ("push", "fetch"):
            url = mirror.get_url(direction)
            if not is_oci_url(url):
                continue
            if image_ref_from_url(url).domain != domain:
                continue
            token = mirror.get_access_token(direction)
            if token:
                return str(token)
    return None


def client(*domains: str) -> engine.Client:
    """An engine client with Spack's settings and the mirror credentials of ``domains``.

    Credentials come from the configured mirrors exactly as Spack's own OCI opener finds
    them (``access_pair``, in its list or ``id_variable``/``secret_variable`` form), plus a
    mirror's ``access_token``/``access_token_variable`` (sent as a bearer token), and, when
    ``config:oci_docker_config`` is true, docker/podman login files and credential helpers.
    TLS follows ``config:ssl_certs`` and ``config:verify_ssl``; ``config:connect_timeout``
    bounds connecting.
    """
    credentials: dict[str, tuple[str, str]] = {}
    tokens: dict[str, str] = {}
    for domain in dict.fromkeys(domains):
        pair = spack.oci.opener.credentials_from_mirrors(domain)
        if pair is not None:
            credentials[domain] = (pair.username, pair.password)
        token = _access_token(domain)
        if token is not None:
            tokens[domain] = token
    certs = bindist.web_util.custom_ssl_certs()
    ca_certs = [certs[1]] if certs else []
    verify = bool(spack.config.get("config:verify_ssl", True))
    timeout = spack.config.get("config:connect_timeout", 10) or 10
    docker = bool(spack.config.get("config:oci_docker_config", False))
    key = (
        tuple(sorted(credentials.items())),
        tuple(sorted(tokens.items())),
        tuple(ca_certs),
        verify,
        timeout,
        docker,
    )
    found = _CLIENTS.get(key)
    if found is None:
        _bridge_logging()
        if not verify:
            tty.warn("config:verify_ssl is false: OCI registry certificates are not verified")
        found = engine.Client(
            credentials=credentials,
            access_tokens=tokens,
            docker_config=docker,
            ca_certs=ca_certs,
            verify_ssl=verify,
            connect_timeout=float(timeout),
        )
        _CLIENTS[key] = found
    return found


def _format_spec(spec: spack.spec.Spec) -> str:
    return str(spec.cformat("{name}{@version}{/hash:7}"))


def _expected_layers(*specs: spack.spec.Spec) -> list[str]:
    """DAG hashes of the layers of an image of ``specs``, bottom first (as Spack stacks
    them in ``_oci_put_manifest``)."""
    nodes = [
        s
        for s in traverse.traverse_nodes(specs, order="topo", deptype=("link", "run"), root=True)
        if not s.external
    ]
    nodes.reverse()
    return [s.dag_hash() for s in nodes]


def _env(spec_list: Sequence[spack.spec.Spec], base_config: dict[str, Any]) -> list[str]:
    env = bindist._oci_retrieve_env_dict_from_config(base_config)
    spack.user_environment.environment_modifications_for_specs(*spec_list).apply_modifications(env)
    return [f"{k}={v}" for k, v in env.items()]


def _extra_config(spec: spack.spec.Spec) -> dict[str, Any]:
    """Spack's ``extra_config``: the spec dict and build-cache fields. The checksum and size
    are placeholders the engine fills in place once the layer is built."""
    spec_dict: dict[str, Any] = spec.to_dict(hash=ht.dag_hash)
    spec_dict["buildcache_layout_version"] = bindist.CURRENT_BUILD_CACHE_LAYOUT_VERSION
    spec_dict["binary_cache_checksum"] = None
    spec_dict["archive_size"] = None
    spec_dict["archive_timestamp"] = datetime.datetime.now().astimezone().isoformat()
    spec_dict["archive_compression"] = "gzip"
    return spec_dict


def _dump_buildinfo(buildinfo: dict[str, Any]) -> bytes:
    return str(syaml.dump(buildinfo, default_flow_style=True)).encode("utf-8")


def _jobs() -> int:
    try:
        import spack.util.cpus

        return max(1, int(spack.util.cpus.determine_number_of_jobs(parallel=True)))
    except Exception:
        return os.cpu_count() or 1


class RustOCIUploader(bindist.Uploader):  # type: ignore[misc]
    """Spack's ``OCIUploader`` on the engine: one ``push`` call for all specs."""

    def __init__(
        self,
        mirror: spack.mirrors.mirror.Mirror,
        force: bool,
        update_index: bool,
        base_image: str | None,
    ) -> None:
        super().__init__(mirror, force, update_index)
        self.target_image = spack.oci.oci.image_from_mirror(mirror)
        # Unlike Spack's backend, an oci:// or oci+http:// URL is accepted too (a base image
        # on a plain-HTTP registry); a bare reference is https, as in Spack.
        self.base_image: ImageReference | None = None
        if base_image and is_oci_url(base_image):
            self.base_image = image_ref_from_url(base_image)
        elif base_image:
            self.base_image = spack.oci.image.ImageReference.from_string(base_image)
        self._base_configs: dict[str, dict[str, Any]] = {}
        #: dag hash -> (digest, diff_id, size) of every layer pushed or found
        self._layers: dict[str, tuple[str, str, int]] = {}

    def _client(self) -> engine.Client:
        domains = [self.target_image.domain]
        if self.base_image is not None:
            domains.append(self.base_image.domain)
        return client(*domains)

    def _base_config(self, architecture: str) -> dict[str, Any]:
        if architecture not in self._base_configs:
            if self.base_image is None:
                config = spack.oci.image.default_config(architecture, "linux")
            else:
                _, config = engine.get_manifest_and_config(
                    ref_string(self.base_image), architecture, client=self._client()
                )
            self._base_configs[architecture] = config
        return self._base_configs[architecture]

    def _run(
        self, items: list[engine.PushItem], progress: Any, tags: set[str] | None = None
    ) -> list[engine.PushResult]:
        return engine.push(
            ref_string(self.target_image, tag=False),
            items,
            base_image=ref_string(self.base_image) if self.base_image else None,
            force=self.force,
            jobs=_jobs(),
            known_layers=self._layers,
            tags=sorted(tags) if tags is not None else None,
            buildinfo_dump=_dump_buildinfo,
            progress=progress,
            tmpdir=self.tmpdir,
            compression=str(spack.config.get("config:oci_compression", "spack")),
            sign_key=spack_sign.sign_key(),
            client=self._client(),
        )

    def _listed_tags(self) -> set[str] | None:
        """The target's tags, listed once for the whole push; ``None`` with ``--force``, or
        when listing fails (the engine then checks every tag itself, as Spack does)."""
        if self.force:
            return None
        tty.info("Checking for existing specs in the buildcache")
        try:
            return set(engine.list_tags(ref_string(self.target_image), client=self._client()))
        except engine.OciError as e:
            tty.debug(f"spack_oci_rs: listing the tags failed, each is checked instead: {e}")
            return None

    def _to_prepare(
        self, specs: list[spack.spec.Spec], listed: set[str] | None
    ) -> list[spack.spec.Spec]:
        """What the engine needs: the specs whose tag is not ``listed`` and the existing
        ones whose layers they stack (and this push has not seen yet). Preparing a spec
        (spec dict, buildinfo, environment) is most of a small push's time."""
        if listed is None:
            return specs
        missing = {s.dag_hash() for s in specs if bindist._oci_default_tag(s) not in listed}
        stacked = {h for s in specs if s.dag_hash() in missing for h in _expected_layers(s)}
        return [
            s
            for s in specs
            if s.dag_hash() in missing
            or (s.dag_hash() in stacked and s.dag_hash() not in self._layers)
        ]

    def _item(self, spec: spack.spec.Spec) -> engine.PushItem:
        arch = bindist._oci_archspec_to_gooarch(spec)
        return engine.PushItem(
            bindist._oci_default_tag(spec),
            key=spec.dag_hash(),
            prefix=spec.prefix,
            prefixes_to_relocate=[str(p) for p in bindist.prefixes_to_relocate(spec)],
            buildinfo=bindist.get_buildinfo_dict(spec),
            layers=_expected_layers(spec),
            architecture=arch,
            env=_env([spec], self._base_config(arch)),
            extra_config=_extra_config(spec),
            annotations={"org.opencontainers.image.description": spec.format()},
        )

    def _progress(self, specs: list[spack.spec.Spec]) -> Callable[[str, dict[str, Any]], None]:
        """Spack's messages, with "[n/total]" and the overall rate and ETA of the layers."""
        by_hash = {s.dag_hash(): s for s in specs}
        state = {"total": len(specs), "done": 0, "bytes": 0, "start": time.time()}

        def counter() -> str:
            total = state["total"]
            if total <= 1:
                return ""
            return f"[{state['done']:{len(str(total))}}/{total}] "

        def progress(event: str, info: dict[str, Any]) -> None:
            spec = by_hash.get(info.get("key", ""))
            if event == "planned":
                state["total"] = info["to_push"]
                if info["to_push"] and info["to_push"] != len(specs):
                    tty.info(
                        f"{info['to_push']} specs need to be pushed to "
                        f"{self.target_image.domain}/{self.target_image.name}"
                    )
            elif event == "layer_done" and spec is not None:
                state["done"] += 1
                state["bytes"] += info["size"]
                elapsed = max(info["seconds"], 0.001)
                overall = max(time.time() - state["start"], 0.001)
                left = state["total"] - state["done"]
                eta = f", ETA {overall / state['done'] * left:.0f}s" if left else ""
                tty.info(
                    f"{counter()}Pushed {_format_spec(spec)}: {info['digest']} ({elapsed:.2f}s, "
                    f"{info['size'] / elapsed / 1024 / 1024:.2f} MB/s; overall "
                    f"{state['bytes'] / overall / 1024 / 1024:.2f} MB/s{eta})"
                )
            elif event == "manifest_done" and spec is not None:
                tagged = self.target_image.with_tag(info["tag"])
                tty.info(f"Tagged {_format_spec(spec)} as {tagged}")

        return progress

    @_guarded
    def push(
        self, specs: list[spack.spec.Spec]
    ) -> tuple[list[spack.spec.Spec], list[tuple[spack.spec.Spec, BaseException]]]:
        listed = self._listed_tags()
        todo = self._to_prepare(specs, listed)
        if listed is not None and all(bindist._oci_default_tag(s) in listed for s in todo):
            return list(specs), []  # everything exists: nothing to prepare, no engine call
        start = time.time()
        results = self._run([self._item(s) for s in todo], self._progress(specs), listed)
        failed: dict[str, BaseException] = {}
        pushed: set[str] = set()
        for r in results:
            if r.digest is not None and r.diff_id is not None and r.size is not None:
                self._layers[r.key] = (r.digest, r.diff_id, r.size)
            if r.status == "pushed":
                pushed.add(r.key)
            elif r.status == "failed":
                failed[r.key] = r.error or RuntimeError("push failed")
        skipped = [s for s in specs if s.dag_hash() not in pushed and s.dag_hash() not in failed]
        errors = [(s, failed[s.dag_hash()]) for s in specs if s.dag_hash() in failed]
        tty.debug(
            f"spack_oci_rs: pushed {len(todo)} of {len(specs)} specs in {time.time() - start:.2f}s"
        )
        if results and results[0].throttled:
            tty.info(
                f"The registry rate-limited {results[0].throttled} requests "
                f"(waited {results[0].throttle_wait:.1f}s)"
            )
        if self.update_index and len(skipped) + len(errors) < len(specs):
            merge_index(self.target_image, [r.tag for r in results if r.status != "failed"])
        return skipped, errors

    def _layer_info(self, ref: str) -> tuple[str, str, int] | None:
        try:
            manifest, config = engine.get_manifest_and_config(ref, client=self._client())
            layer = manifest["layers"][-1]
            return str(layer["digest"]), str(config["rootfs"]["diff_ids"][-1]), int(layer["size"])
        except (engine.OciError, KeyError, IndexError, TypeError):
            return None

    def _look_up_layers(self, roots: list[spack.spec.Spec]) -> None:
        """Layer info of the images of ``roots`` and their link/run dependencies that the
        push did not need (skipped ones are not looked up), fetched concurrently."""
        nodes = [
            s
            for s in traverse.traverse_nodes(roots, deptype=("link", "run"), root=True)
            if not s.external and s.dag_hash() not in self._layers
        ]
        refs = [ref_string(self.target_image.with_tag(bindist._oci_default_tag(s))) for s in nodes]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for spec, info in zip(nodes, pool.map(self._layer_info, refs), strict=True):
                if info is not None:
                    self._layers[spec.dag_hash()] = info

    @_guarded
    def tag(self, tag: str, roots: list[spack.spec.Spec]) -> None:
        tagged_image = self.target_image.with_tag(tag)
        self._look_up_layers(roots)
        arch = bindist._oci_archspec_to_gooarch(roots[0])
        item = engine.PushItem(
            spack.oci.image.ensure_valid_tag(tag),
            key=f"tag:{tag}",
            layers=_expected_layers(*roots),
            architecture=arch,
            env=_env(roots, self._base_config(arch)),
        )
        (result,) = self._run([item], None)
        if result.status == "failed":
            raise bindist.PushToBuildCacheError(f"Failed to tag {tagged_image}: {result.error}")
        tty.info(f"Tagged {tagged_image}")


@_guarded
def update_index(image_ref: ImageReference, tmpdir: str) -> None:
    """Spack's ``_oci_update_index`` on the engine: the index rebuilt from the tags and
    written by the engine, byte for byte as Spack writes it.

    The map tag -> manifest -> config digest it was built from is stored with the index, so
    a tag whose manifest did not change costs one HEAD (on any machine) and its records come
    from the previous index; only new or changed tags are fetched.
    """
    ref = ref_string(image_ref, tag=False)
    result = engine.update_index(
        ref,
        targets=spack_index.targets_json(),
        spack_records=spack_index.spack_records,
        sign_key=spack_sign.sign_key(),
        client=client(image_ref.domain),
    )
    _report_index(image_ref, result)


def _report_index(image_ref: ImageReference, result: engine.IndexUpdate) -> None:
    where = f"{image_ref.domain}/{image_ref.name}"
    for tag, reason in result.skipped:
        tty.warn(f"Skipping {tag} in the index of {where}: {reason}")
    if result.note:
        tty.debug(f"spack_oci_rs: index of {where} rebuilt: {result.note}")
    tty.debug(
        f"spack_oci_rs: index of {where} ({result.mode}): {result.specs} specs, "
        f"{result.fetched} configs fetched, {result.reused} unchanged, "
        f"{result.attempts} attempt(s)"
    )


@_guarded
def merge_index(image_ref: ImageReference, tags: list[str]) -> None:
    """``push --update-index``: the specs just pushed (``tags``) merged into the current
    index, without listing the cache's tags; a missing or unreadable index is rebuilt."""
    result = engine.update_index(
        ref_string(image_ref, tag=False),
        merge=tags,
        targets=spack_index.targets_json(),
        spack_records=spack_index.spack_records,
        sign_key=spack_sign.sign_key(),
        client=client(image_ref.domain),
    )
    _report_index(image_ref, result)
    if not result.settled:
        where = f"{image_ref.domain}/{image_ref.name}"
        tty.warn(
            f"The index of {where} may lack the specs just pushed: other pushers kept "
            f"replacing it ({result.attempts} attempts). Run `spack buildcache update-index` "
            "on the mirror to repair it."
        )


class RustOCIIndexFetcher(bindist.IndexFetcher):  # type: ignore[misc]
    """Spack's ``OCIIndexFetcher`` on the engine (also for ``oci+http://`` mirrors)."""

    def __init__(self, url_and_version: Any, local_hash: str | None) -> None:
        self.local_hash = local_hash
        self.ref = image_ref_from_url(url_and_version.url)

    @_guarded
    def conditional_fetch(self) -> Any:
        known = f"sha256:{self.local_hash}" if self.local_hash else None
        where = f"{self.ref.domain}/{self.ref.name}"
        try:
            found = engine.fetch_index(
                ref_string(self.ref, tag=False),
                known=known,
                trusted_keys=spack_sign.trusted_keys(self.ref.domain, self.ref.name),
                client=client(self.ref.domain),
            )
        except engine.OciError as e:
            raise bindist.FetchIndexError(f"Could not fetch the index of {where}", e) from e
        if found is None:
            raise bindist.FetchIndexError(f"{where} has no index (index.spack)")
        digest, data = found
        if data is None:
            return bindist.FetchIndexResult(etag=None, hash=None, data=None, fresh=True)
        return bindist.FetchIndexResult(
            etag=None, hash=digest.split(":", 1)[1], data=data.decode("utf-8"), fresh=False
        )


_BLOB_URL = re.compile(r"^(https?)://([^/]+)/v2/(.+)/blobs/(sha256:[0-9a-fA-F]{64})$")


def _blob_url_parts(url: str) -> tuple[str, str] | None:
    """``(engine ref, digest)`` of a registry blob URL, or None if it is not one."""
    m = _BLOB_URL.match(url)
    if not m:
        return None
    scheme, domain, name, digest = m.groups()
    return f"{'oci+http' if scheme == 'http' else 'oci'}://{domain}/{name}", digest


@_guarded
def fetch_to_stage(strategy: Any) -> None:
    """``OCIRegistryFetchStrategy.fetch`` on the engine: stream the blob to the stage's save
    file, verified; Spack's own checksum check still runs afterwards."""
    import spack.fetch_strategy as fs

    parts = _blob_url_parts(strategy.url)
    file = strategy.stage.save_filename
    if os.path.lexists(file):
        os.remove(file)
    if parts is None:
        raise fs.FailedDownloadError(ValueError(f"not a registry blob URL: {strategy.url}"))
    ref, digest = parts
    tty.msg(f"Fetching {strategy.url}")
    domain = ref.split("://", 1)[1].split("/", 1)[0]
    try:
        engine.fetch_blob(ref, digest, file, client=client(domain))
    except engine.OciError as e:
        raise fs.FailedDownloadError(e) from e


def _oci_mirrors() -> list[ImageReference]:
    import spack.mirrors.mirror

    refs = []
    for mirror in spack.mirrors.mirror.MirrorCollection(binary=True).values():
        url = mirror.fetch_url
        if is_oci_url(url):
            refs.append(image_ref_from_url(url))
    return refs


def _may_use_cache(task: Any) -> bool:
    if hasattr(task, "use_cache"):  # Spack 1.1
        return bool(task.use_cache)
    return getattr(task, "install_policy", "auto") != "source_only"  # develop


def prefetch_for_install(tasks: Iterable[Any]) -> int:
    """:func:`prefetch_specs` of the installer's build tasks that may come from a cache."""
    tasks = [t for t in tasks if _may_use_cache(t)]
    unsigned = spack_sign.unsigned_of([t.request.install_args for t in tasks])
    return int(prefetch_specs([t.pkg.spec for t in tasks], unsigned))


#: Images the install prefetch reads at once: each is a manifest, then two blobs; the
#: client's per-registry limit (32 requests in flight, adaptive) bounds the requests.
_PREFETCH_IMAGES = 64


def _request_policy(request: Any, root: bool) -> str:
    """A build request's cache policy for its root or its dependencies: ``auto``,
    ``cache_only`` or ``source_only`` (develop's names; v1.0/v1.1's ``*_use_cache``)."""
    args = request.install_args
    policy = "root_policy" if root else "dependencies_policy"
    if policy in args:  # develop
        return str(args[policy])
    use = args.get("package_use_cache" if root else "dependencies_use_cache", True)
    return "auto" if use else "source_only"


def _request_specs(request: Any) -> Iterator[spack.spec.Spec]:
    """The specs of one build request that the installer may take from a cache: its root
    and the dependencies it installs (``traverse_dependencies``, the installer's own walk)."""
    args = request.install_args
    if args.get("install_package", True) and _request_policy(request, True) != "source_only":
        yield request.pkg.spec
    if args.get("install_deps", True) and _request_policy(request, False) != "source_only":
        yield from request.traverse_dependencies()


@_guarded
def prefetch_for_requests(requests: Iterable[Any]) -> int:
    """:func:`prefetch_specs` of the installer's build requests (root specs with their
    dependency DAGs and cache policies) before it makes its queue: no second ``_init_queue``."""
    found: dict[str, spack.spec.Spec] = {}
    requests = list(requests)
    for request in requests:
        for spec in _request_specs(request):
            found.setdefault(spec.dag_hash(), spec)
    unsigned = spack_sign.unsigned_of([r.install_args for r in requests])
    return int(prefetch_specs(list(found.values()), unsigned))


@_guarded
def prefetch_specs(specs: Sequence[spack.spec.Spec], unsigned: bool | None = None) -> int:
    """Download the config and tarball blobs of every spec that an OCI mirror has, all at
    once, into Spack's download cache (``blobs/sha256/<hex>``, Spack's OCI layout), so that
    installing them one by one reads local files. Failures are left to the normal install
    path, which reports them. Returns the number of blobs downloaded."""
    import spack.caches

    mirrors = _oci_mirrors()
    wanted = [s for s in specs if not s.external and not s.installed]
    if not mirrors or not wanted:
        return 0
    root = spack.caches.FETCH_CACHE.root
    start = time.perf_counter()
    pending = {s.dag_hash(): s for s in wanted}
    downloaded = 0
    for mirror in mirrors:
        if not pending:
            break
        specs_here = list(pending.values())
        refs = [ref_string(mirror.with_tag(bindist._oci_default_tag(s))) for s in specs_here]
        trusted = spack_sign.trusted_keys(mirror.domain, mirror.name, unsigned)
        results = engine.prefetch_images(
            refs,
            root,
            concurrency=_PREFETCH_IMAGES,
            trusted_keys=trusted,
            client=client(mirror.domain),
        )
        for spec, r in zip(specs_here, results, strict=True):
            if isinstance(r.error, engine.SignatureError):
                spack_sign.report_refusal(r.ref, r.error)
            if r.ok and r.config_digest and r.layer_digest:
                _PREFETCHED[r.ref] = (r.config_digest, r.layer_digest)
                if trusted:
                    _VERIFIED.add(r.ref)
                downloaded += r.downloaded
                pending.pop(spec.dag_hash(), None)
    tty.debug(
        f"spack_oci_rs: prefetched {downloaded} blobs for {len(wanted)} specs "
        f"in {time.perf_counter() - start:.2f} s"
    )
    return downloaded


def _image_digests(key: str, domain: str, trusted: list[str] | None) -> tuple[str, str]:
    """(config digest, layer digest) of the image ``key``: from the install prefetch when it
    had the image (no request), else from its manifest, fetched once. With ``trusted`` keys
    only a verified image: one the prefetch verified, or one verified now (its blobs then in
    the download cache); a refusal is said once and raised."""
    if trusted and key not in _VERIFIED:
        import spack.caches

        (r,) = engine.prefetch_images(
            [key], spack.caches.FETCH_CACHE.root, trusted_keys=trusted, client=client(domain)
        )
        if isinstance(r.error, engine.SignatureError):
            spack_sign.report_refusal(key, r.error)
        if r.error is not None:
            raise r.error
        _PREFETCHED[key] = (str(r.config_digest), str(r.layer_digest))
        _VERIFIED.add(key)
    digests = _PREFETCHED.get(key)
    if digests is None:
        try:
            manifest, _ = engine.get_manifest_and_config(key, recurse=0, client=client(domain))
        except engine.TransportError as e:
            if domain not in _UNREACHABLE:
                # Said once per mirror: otherwise all the user sees is "No binary found".
                _UNREACHABLE.add(domain)
                tty.warn(f"Cannot use the OCI mirror {domain}: {e}")
            raise
        digests = (manifest["config"]["digest"], manifest["layers"][-1]["digest"])
    return digests


_MANIFEST_URL = re.compile(r"^(https?)://([^/]+)/v2/(.+)/manifests/([^/]+)$")


@_guarded
def manifest_response(url: str, unsigned: bool | None = None) -> Any:
    """The reply to the manifest request of the OCI branch of Spack's ``download_tarball``
    (the plugin routes it here): the image's config and tarball digests, from the install
    prefetch or the registry, as a file Spack's ``json.load`` reads; None if ``url`` is not a
    manifest URL. A registry error is raised as Spack's opener would raise one (Spack then
    tries the next mirror)."""
    m = _MANIFEST_URL.match(url)
    if m is None:
        return None
    scheme, domain, name, tag = m.groups()
    key = f"{'oci+http' if scheme == 'http' else 'oci'}://{domain}/{name}:{tag}"
    config, layer = _image_digests(key, domain, spack_sign.trusted_keys(domain, name, unsigned))
    manifest = {"config": {"digest": config}, "layers": [{"digest": layer}]}
    return io.BytesIO(json.dumps(manifest).encode())


@_guarded
def download_tarball(spec: spack.spec.Spec, ref: ImageReference, fetch_url: str) -> Any:
    """The OCI branch of Spack's ``download_tarball`` for one mirror, as the patched trees
    call it: the spec file and the tarball as stages, checked and cached, or None to try the
    next mirror.

    The digests come from the install prefetch when it had this image (no request, and the
    blobs are in the download cache already); otherwise the manifest is fetched once.
    """
    from spack.oci.image import Digest

    key = ref_string(ref)
    try:
        digests = _image_digests(key, ref.domain, spack_sign.trusted_keys(ref.domain, ref.name))
    except (engine.OciError, KeyError, IndexError, TypeError) as e:
        tty.debug(f"spack_oci_rs: no binary for {_format_spec(spec)} in {key}: {e}")
        return None
    spec_digest, tarball_digest = (Digest.from_string(d) for d in digests)

    with spack.oci.oci.make_stage(ref.blob_url(spec_digest), spec_digest, keep=True) as stage:
        try:
            stage.fetch()
            stage.check()
            bindist.get_valid_spec_file(
                stage.save_filename, bindist.CURRENT_BUILD_CACHE_LAYOUT_VERSION
            )
        except bindist.InvalidMetadataFile as e:
            tty.warn(
                f"Ignoring binary package for {spec.name}/{spec.dag_hash()[:7]} "
                f"from {fetch_url} due to invalid metadata file: {e}"
            )
            stage.destroy()
            return None
        except Exception as e:
            tty.debug(f"spack_oci_rs: spec file of {_format_spec(spec)} from {key}: {e}")
            return None
        stage.cache_local()
    stage.destroy()

    with spack.oci.oci.make_stage(
        ref.blob_url(tarball_digest), tarball_digest, keep=True
    ) as tarball_stage:
        try:
            tarball_stage.fetch()
            tarball_stage.check()
        except Exception as e:
            tty.debug(f"spack_oci_rs: tarball of {_format_spec(spec)} from {key}: {e}")
            return None
        tarball_stage.cache_local()
    return tarball_stage
