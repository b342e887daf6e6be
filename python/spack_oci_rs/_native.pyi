"""Type stubs of the native module ``spack_oci_rs._native`` (checked by mypy.stubtest).

References (``ref``) are OCI mirror URLs (``oci://host/repo[:tag]`` over https,
``oci+http://host/repo`` over plain http) or bare image references (``host/repo:tag``,
``ubuntu:24.04`` with Docker Hub defaults), parsed exactly as Spack parses them. Digests are
``sha256:<64 hex>``. Every call releases the GIL while it works; Ctrl-C cancels it within
about 100 ms and raises ``KeyboardInterrupt``. Errors are :class:`spack_oci_rs.exceptions.OciError`
subclasses.
"""

from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, ClassVar, final

__all__ = [
    "Client",
    "CopyResult",
    "FetchResult",
    "IndexConfigs",
    "IndexUpdate",
    "PrefetchResult",
    "PushItem",
    "PushResult",
    "TarballInfo",
    "Verified",
    "__version__",
    "blob_exists",
    "build_index",
    "copy",
    "copy_missing_layers",
    "create_tarball",
    "default_tag",
    "ensure_valid_tag",
    "fetch_blob",
    "fetch_blobs",
    "fetch_index",
    "generate_key_pair",
    "get_manifest_and_config",
    "index_json",
    "list_tags",
    "parse_reference",
    "prefetch_images",
    "probe",
    "push",
    "reset_logging",
    "sign",
    "update_index",
    "upload_blob",
    "upload_index",
    "upload_manifest",
    "verify",
]

__version__: str

_Path = str | PathLike[str]

@final
class Client:
    """A connection pool, bearer-token cache and settings, shared by the calls given it.

    Calls without ``client=`` share a default client. A client is safe to use from several
    threads, and after ``os.fork()`` (the child builds its own connections).

    Registries are authenticated as they ask (``WWW-Authenticate``): anonymously first, then
    HTTP Basic, or bearer tokens from the registry's token realm (Docker token spec and
    OAuth2), cached per registry and scope, shared by all concurrent transfers and fetched
    again once when the registry rejects one. Credentials and tokens are never sent to
    another host: a redirect elsewhere (blob storage, a CDN) drops ``Authorization``, and a
    redirect from https to plain http is refused. Proxies come from ``http_proxy``,
    ``https_proxy``, ``all_proxy`` and ``no_proxy`` (either case), read when the client is
    first used.

    Args:
        credentials: registry (``host[:port]``) -> ``(username, password)`` (a Spack
            mirror's ``access_pair``). Used for Basic auth and at the token realm.
        access_tokens: registry -> a bearer token sent to the registry as it is
            (``Authorization: Bearer <token>``), never exchanged (a mirror's
            ``access_token``). A pair in ``credentials`` for the same registry wins.
        docker_config: ``True`` also reads the logins of ``docker login`` / ``podman login``
            (``$REGISTRY_AUTH_FILE`` or ``$XDG_RUNTIME_DIR/containers/auth.json``,
            ``~/.config/containers/auth.json``, ``$DOCKER_CONFIG/config.json`` or
            ``~/.docker/config.json``: ``auths``, ``credHelpers``, ``credsStore``), or the
            path of one such file. Explicit credentials come first.
        client_cert: a client certificate (PEM) for registries that require mutual TLS;
            ``client_key`` its private key (PEM, unencrypted), unless the certificate file
            holds the key too.
        client_key: see ``client_cert``.
        ca_certs: extra CA certificate files (PEM) or directories, trusted besides the
            system roots (Spack's ``config:ssl_certs``). The system roots are replaced by
            ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when those are set, as in OpenSSL.
        verify_ssl: ``False`` disables TLS certificate checks (Spack's ``config:verify_ssl``).
        connect_timeout: seconds to establish a connection (Spack's ``config:connect_timeout``).
        read_timeout: seconds without receiving data before a request counts as stalled.
        retries: attempts per operation, the first included. Connection errors, resets,
            stalls, 408, 429 and 5xx are retried with exponential backoff and jitter,
            honouring ``Retry-After`` (seconds or HTTP-date); 400, 401 (after one
            re-authentication), 403 and 404 are not. The requests of one operation (an
            upload session, a resumed download) share the count, so a failing registry sees
            at most ``retries`` attempts of each; a download that makes progress starts the
            count over.
        max_concurrency: requests in flight per registry.
        retry_budget: seconds after which no retry starts (counted from the first attempt,
            or from the last progress of a download); a ``Retry-After`` that would end
            beyond it fails at once.
        retry_backoff: the first retry's delay in seconds (doubling up to 30 s, each delay
            randomly between half and all of it).

    A setting not given (or ``None``) takes its value from :attr:`DEFAULTS`.
    """

    DEFAULTS: ClassVar[dict[str, bool | int | float]]
    """The value each of ``verify_ssl``, ``connect_timeout``, ``read_timeout``, ``retries``,
    ``max_concurrency``, ``retry_budget`` and ``retry_backoff`` takes when it is not given:
    the engine's own defaults, kept in one place (Rust's ``ClientOptions::default``)."""

    def __new__(
        cls,
        *,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        access_tokens: Mapping[str, str] | None = None,
        docker_config: bool | _Path | None = None,
        client_cert: _Path | None = None,
        client_key: _Path | None = None,
        ca_certs: Sequence[_Path] | None = None,
        verify_ssl: bool | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
        max_concurrency: int | None = None,
        retry_budget: float | None = None,
        retry_backoff: float | None = None,
    ) -> Client: ...
    def credentials_source(self, registry: str) -> str:
        """Where the credentials for ``registry`` (``host[:port]``) come from and what they
        are (``username "ci" given explicitly …``, ``… from ~/.docker/config.json``,
        ``docker-credential-pass …``), or why there are none; never the secret. Runs a
        Docker credential helper if one is configured for the registry."""

def list_tags(ref: str, *, missing_ok: bool = True, client: Client | None = None) -> list[str]:
    """All tags of the repository of ``ref``, sorted, following ``Link: rel="next"``
    pagination (relative and absolute links). A repository that does not exist
    (``NAME_UNKNOWN``) has no tags, or with ``missing_ok=False`` raises
    :class:`NotFoundError` naming the registry and repository."""

def blob_exists(ref: str, digest: str, *, client: Client | None = None) -> bool:
    """Whether blob ``digest`` exists in the repository of ``ref`` (HEAD)."""

def fetch_blob(ref: str, digest: str, dest: _Path, *, client: Client | None = None) -> int:
    """Stream blob ``digest`` of the repository of ``ref`` to ``dest``; return its size.

    The sha256 is verified while streaming into a temp file in ``dest``'s directory, which is
    synced and renamed to ``dest`` only after the digest matched: ``dest`` never holds a
    partial or wrong file, and a failed or cancelled download leaves no file behind. A
    dropped or stalled connection resumes with ``Range`` where the registry supports it (else
    the download starts over); bytes that do not match are downloaded once more before
    :class:`DigestMismatchError` is raised.

    Raises:
        DigestMismatchError: the bytes do not match ``digest`` (nothing is written).
        NotFoundError: no such blob.
    """

@final
class FetchResult:
    """The outcome of one download of :func:`fetch_blobs`."""

    @property
    def ref(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def dest(self) -> PathLike[str]: ...
    @property
    def ok(self) -> bool: ...
    @property
    def size(self) -> int | None: ...
    @property
    def error(self) -> BaseException | None:
        """The exception of a failed download, else None."""
    @property
    def resumed(self) -> int:
        """Times the download resumed with ``Range`` after a dropped connection."""
    @property
    def restarted(self) -> int:
        """Times it started over from the first byte (``Range`` not honoured, or wrong
        bytes once)."""
    @property
    def retries(self) -> int:
        """Failed attempts that were retried (drops, stalls, 429/5xx answers)."""

def fetch_blobs(
    requests: Sequence[tuple[str, str, _Path]],
    *,
    concurrency: int = 16,
    progress: Callable[[str, dict[str, Any]], object] | None = None,
    client: Client | None = None,
) -> list[FetchResult]:
    """Download many blobs concurrently, with :func:`fetch_blob`'s guarantees each.

    Args:
        requests: ``(ref, digest, dest)`` triples.
        concurrency: downloads in flight.
        progress: called as ``progress("bytes", {"done": n, "total": 0})`` from engine
            threads with the GIL, at most every 100 ms and once at the end (``total`` is 0:
            the sizes are not known in advance). A callback that raises is reported once
            and not called again; the downloads go on.

    Returns:
        One result per request, in order; a failure does not stop the others.
    """

def upload_blob(
    ref: str,
    data: bytes | _Path,
    digest: str | None = None,
    *,
    force: bool = False,
    client: Client | None = None,
) -> tuple[str, bool]:
    """Upload a blob (bytes, or a file path) to the repository of ``ref``.

    Args:
        data: the blob's bytes or a file to stream.
        digest: its digest; computed when not given.
        force: upload even if the registry has it (skips the HEAD check).

    A failed upload starts over with a new session (never re-sending to a failed one). A
    registry that refuses the whole blob in one request (413) gets it in chunks (``PATCH``
    with ``Content-Range``) of its ``OCI-Chunk-Min-Length``, else 4 MiB, halved while it
    still refuses.

    Returns:
        ``(digest, uploaded)``; ``uploaded`` is False when the blob existed.
    """

def upload_manifest(
    ref: str,
    manifest: Mapping[str, Any] | bytes,
    *,
    tag: bool = True,
    media_type: str | None = None,
    client: Client | None = None,
) -> tuple[str, int]:
    """Upload a manifest or index under the tag of ``ref`` (or its digest when ``tag`` is
    False).

    Args:
        manifest: a dict, serialized as compact JSON exactly as Spack does, or exact bytes.
        media_type: the Content-Type; defaults to the manifest's ``mediaType``.

    Returns:
        ``(digest, size)`` of the uploaded bytes.
    """

def get_manifest_and_config(
    ref: str,
    architecture: str = "amd64",
    *,
    recurse: int = 3,
    client: Client | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of ``ref``. OCI and Docker manifests and indexes are accepted;
    from an index the entry for ``architecture`` is taken, at most ``recurse`` levels deep.
    The config is verified against its digest."""

def copy_missing_layers(
    src: str,
    dst: str,
    architecture: str = "amd64",
    *,
    client: Client | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy the layers of image ``src`` (for ``architecture``) that repository ``dst`` lacks,
    by cross-repository mount on the same registry or streamed copy otherwise. Returns the
    base image's ``(manifest, config)``."""

@final
class CopyResult:
    """The outcome of one tag of :func:`copy`."""

    @property
    def tag(self) -> str: ...
    @property
    def status(self) -> str:
        """``"copied"``, ``"unchanged"`` (the destination had this manifest under the tag:
        nothing sent) or ``"failed"``."""
    @property
    def manifest_digest(self) -> str | None: ...
    @property
    def blobs_copied(self) -> int:
        """Blobs streamed from the source into the destination."""
    @property
    def blobs_mounted(self) -> int:
        """Blobs mounted from the source repository (same registry)."""
    @property
    def blobs_present(self) -> int:
        """Blobs the destination had already."""
    @property
    def bytes_copied(self) -> int:
        """Bytes streamed."""
    @property
    def error(self) -> BaseException | None:
        """The exception of a failed tag, else None."""

def copy(
    src: str,
    dst: str,
    *,
    tags: Sequence[str] | None = None,
    concurrency: int = 8,
    progress: Callable[[str, dict[str, Any]], object] | None = None,
    client: Client | None = None,
) -> list[CopyResult]:
    """Copy a build cache: every tag of repository ``src`` (or ``tags``) to ``dst``, on the
    same registry or another one.

    Blobs the destination lacks are mounted (same registry) or streamed from the download
    into the upload, never through a temp file; each manifest is PUT with the exact bytes
    fetched and its media type, so manifests, configs and digests are unchanged (image
    indexes too, with their manifests). A tag the destination holds with the same manifest
    is ``"unchanged"`` and costs two GETs: a second copy uploads nothing, an interrupted one
    continues. ``index.spack`` (with its tag-map layer) is copied last, and only if every
    other tag of the copy arrived.

    Args:
        tags: tags to copy (each must exist in ``src``; others fail as ``NotFoundError``).
        concurrency: tags copied at the same time.
        progress: ``progress(event, info)`` from engine threads with the GIL:
            ``("bytes", {"done", "total"})`` at most every 100 ms and at the end (``total``
            grows as missing blobs are found), and ``("tag", {"tag", "status",
            "bytes_copied", "error"})`` per tag. A callback that raises is reported once and
            not called again; the copy goes on.

    Returns:
        One :class:`CopyResult` per tag, sorted, the index last.

    Raises:
        NotFoundError: ``src`` does not exist.
        InvalidArgumentError: ``src`` and ``dst`` are the same repository.
    """

@final
class IndexConfigs:
    """What :func:`build_index` gathered."""

    @property
    def configs(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(tag, manifest digest, config)`` of every spec tag whose config has a ``spec``."""
    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(tag, reason)`` of spec tags left out (vanished, unreadable, no spec)."""
    @property
    def spec_tags(self) -> int:
        """How many spec tags were listed."""

def build_index(
    ref: str,
    *,
    concurrency: int = 64,
    client: Client | None = None,
) -> IndexConfigs:
    """List the tags of the repository of ``ref`` and fetch the manifest and config of every
    spec tag (``*.spack`` except ``index.spack``) concurrently.

    Args:
        concurrency: requests in flight.
    """

def upload_index(ref: str, index: bytes | _Path, *, client: Client | None = None) -> str:
    """Upload an ``index.json`` (bytes or a file) as Spack does: the index blob, a ``{}``
    config blob and an OCI manifest tagged ``index.spack``. Returns the manifest digest."""

def index_json(
    configs: Sequence[tuple[str, bytes]],
    *,
    targets: str,
    spack_records: Callable[[bytes], str] | None = None,
    previous: bytes | None = None,
) -> tuple[bytes, list[tuple[str, str]]]:
    """Spack's build-cache ``index.json`` (``BuildCacheDatabase._write_to_file``) for image
    ``configs`` (name, config bytes), byte for byte, written by the engine.

    Args:
        targets: ``{name: target dict}`` JSON of the running Spack's archspec targets
            (``spack_oci_rs.spack_index.targets_json()``).
        spack_records: called with a config the engine cannot read alone (old specfile
            formats, ...); returns its records as Spack makes them
            (``spack_oci_rs.spack_index.spack_records``). Without it such configs are skipped.
        previous: an ``index.json`` to add the configs to (a merge) instead of an empty one.

    Returns:
        The bytes, and ``(name, reason)`` of configs left out (not JSON, no ``spec``, ...).

    Raises:
        ValueError: ``targets`` or ``previous`` cannot be read.
    """

@final
class IndexUpdate:
    """How :func:`update_index` went."""

    @property
    def mode(self) -> str:
        """``"rebuild"`` or ``"merge"`` (a merge with no readable index rebuilds)."""
    @property
    def note(self) -> str | None:
        """Why a merge rebuilt instead (no index yet, an unreadable one)."""
    @property
    def manifest_digest(self) -> str | None:
        """The ``index.spack`` manifest now in the repository (None when not settled)."""
    @property
    def specs(self) -> int:
        """Specs in the index (records marked ``in_buildcache``)."""
    @property
    def records(self) -> int:
        """All records (specs and their dependencies)."""
    @property
    def spec_tags(self) -> int:
        """Spec tags listed (rebuild) or given (merge)."""
    @property
    def fetched(self) -> int:
        """Configs fetched."""
    @property
    def reused(self) -> int:
        """Tags whose manifest was unchanged (one HEAD) and whose records were reused."""
    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(tag, reason)`` of tags left out (vanished, not JSON, no ``spec``, ...)."""
    @property
    def attempts(self) -> int:
        """Merge rounds (more than 1 when other pushers replaced the index meanwhile)."""
    @property
    def settled(self) -> bool:
        """False when other pushers kept replacing the index until the attempts ran out:
        ``spack buildcache update-index`` (a rebuild) repairs it."""

def update_index(
    ref: str,
    *,
    targets: str,
    merge: Sequence[str] | None = None,
    spack_records: Callable[[bytes], str] | None = None,
    concurrency: int = 64,
    attempts: int = 20,
    sign_key: _Path | None = None,
    client: Client | None = None,
) -> IndexUpdate:
    """Update the ``index.spack`` of the repository of ``ref``.

    Without ``merge``, a rebuild (``spack buildcache update-index``): the index is written
    from the spec tags, as Spack's ``_oci_update_index`` writes it, byte for byte, with the
    map tag -> manifest -> config digest it was built from stored beside it (a second layer
    that Spack ignores). With that map, a tag whose manifest is unchanged costs one HEAD and
    its records come from the previous index; new or changed tags get their manifest and
    config fetched. Tags that vanished, or whose config is not JSON or has no ``spec``, are
    skipped (``skipped``).

    With ``merge`` (the tags just pushed; ``push --update-index``), their specs and their
    dependencies' records are added to the current index, without listing tags. When
    another pusher replaced the index meanwhile (its manifest digest changed before our PUT,
    or right after it), the specs are merged into theirs and tried again, up to
    ``attempts`` rounds; ``settled`` says whether it worked out. Without an index, or with
    one that cannot be read, the index is rebuilt instead (``mode == "rebuild"``).

    Args:
        targets, spack_records: as for :func:`index_json`.
        concurrency: requests in flight (rebuild).
        sign_key: a private key (PEM) to sign the index image with, as :func:`push`
            signs its images: the signature's blobs go up beside the index's, its manifest
            beside the index manifest (no round trip added). When a merge finds that
            another pusher's index already holds our specs, that index is signed.
    """

def fetch_index(
    ref: str,
    *,
    known: str | None = None,
    trusted_keys: Sequence[_Path] | None = None,
    client: Client | None = None,
) -> tuple[str, bytes | None] | None:
    """The ``index.spack`` of the repository of ``ref``: ``(layer digest, index bytes)``,
    verified; None when the repository has no index.

    Args:
        known: the digest of the index the caller has cached; when it is still current the
            bytes are not downloaded and come back as None.
        trusted_keys: public keys (SubjectPublicKeyInfo PEM files): the index image must be
            signed by one of them (see :func:`verify`), else ``SignatureError``.
    """

@final
class PrefetchResult:
    """The outcome of prefetching one image with :func:`prefetch_images`."""

    @property
    def ref(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def config_digest(self) -> str | None: ...
    @property
    def layer_digest(self) -> str | None: ...
    @property
    def downloaded(self) -> int:
        """Blobs downloaded by this call (0 when both were present)."""
    @property
    def error(self) -> BaseException | None: ...

def prefetch_images(
    refs: Sequence[str],
    root: _Path,
    *,
    concurrency: int = 16,
    trusted_keys: Sequence[_Path] | None = None,
    client: Client | None = None,
) -> list[PrefetchResult]:
    """For each image: fetch its manifest, then its config and its last layer into
    ``root/blobs/sha256/<hex>`` (Spack's download-cache layout for OCI blobs), verified,
    skipping blobs already there. Images are fetched ``concurrency`` at a time; one result
    per reference, in order.

    With ``trusted_keys`` (public key PEM files), an image is accepted only when signed by
    one of them (see :func:`verify`): its blobs download beside the check into hidden files
    and enter ``root`` only once it passed; a refused image's result carries a
    ``SignatureError`` and leaves nothing in ``root``."""

def probe(ref: str, *, client: Client | None = None) -> dict[str, Any]:
    """Check a registry and repository (``spack-oci-rs doctor``): ``connect_ms`` and
    ``rtt_ms`` of ``GET /v2/``, ``http_version``, ``auth_scheme`` (``none``, ``basic``,
    ``bearer``), ``pull`` and ``push`` (``{"ok", "detail"[, "error"]}``: listing tags, opening
    and cancelling an upload session), ``range`` and ``mount`` (bool, or None when there was no
    blob to try)."""

def reset_logging() -> None:
    """Drop the engine's cache of Python logger levels: call it after changing the level of
    the ``spack_oci_rs`` loggers, or the engine keeps using the old ones."""

def default_tag(name: str, version: str, dag_hash: str) -> str:
    """Spack's default tag ``<name>-<version>-<hash>.spack``, sanitized and at most 128
    characters."""

def ensure_valid_tag(tag: str) -> str:
    """Spack's ``ensure_valid_tag``: characters outside ``[\\w.-]`` become ``_``; longer than
    128 characters keeps the first and last 64."""

def parse_reference(ref: str) -> dict[str, str | None]:
    """Parse a reference or OCI URL into ``scheme``, ``domain``, ``name``, ``tag``,
    ``digest``."""

@final
class PushItem:
    """One image of a push plan.

    Args:
        tag: the tag to push (Spack: ``default_tag(name, version, hash)``).
        key: identifies the item in the plan and in ``layers`` (Spack: the DAG hash);
            defaults to ``tag``.
        tarball: a finished ``.tar.gz`` to use as the item's layer.
        diff_id: the tarball's uncompressed digest, if known (else computed).
        prefix: an install prefix to archive exactly as Spack does (instead of ``tarball``).
        prefixes_to_relocate: prefixes whose occurrences make files relocatable.
        buildinfo: the buildinfo dict; the relocation lists are added before it is serialized
            by ``push(buildinfo_dump=...)``.
        layers: keys of the items whose layers make up the image, bottom first, this item's
            own key included; keys with no known layer are left out (as Spack does). Empty
            means ``[key]``.
        architecture: platform architecture (``amd64``, ``arm64``), selects the base image.
        env: the complete ``config.Env`` list; None keeps the base image's with a default
            ``PATH``.
        extra_config: fields merged at the top level of the image config.
        fill_checksum: set ``binary_cache_checksum`` and ``archive_size`` in the config from
            the built layer (in place if ``extra_config`` has them). Defaults to True when
            the item has a layer and ``extra_config``.
        annotations: manifest annotations (left out for Docker-format base images).
    """

    def __new__(
        cls,
        tag: str,
        *,
        key: str | None = None,
        tarball: _Path | None = None,
        diff_id: str | None = None,
        prefix: _Path | None = None,
        prefixes_to_relocate: Sequence[str] = ...,
        buildinfo: dict[str, Any] | None = None,
        layers: Sequence[str] = ...,
        architecture: str = ...,
        env: Sequence[str] | None = None,
        extra_config: dict[str, Any] | None = None,
        fill_checksum: bool | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> PushItem: ...
    @property
    def tag(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def tarball(self) -> PathLike[str] | None: ...
    @property
    def diff_id(self) -> str | None: ...
    @property
    def prefix(self) -> PathLike[str] | None: ...
    @property
    def prefixes_to_relocate(self) -> list[str]: ...
    @property
    def buildinfo(self) -> dict[str, Any] | None: ...
    @property
    def layers(self) -> list[str]: ...
    @property
    def architecture(self) -> str: ...
    @property
    def env(self) -> list[str] | None: ...
    @property
    def extra_config(self) -> dict[str, Any] | None: ...
    @property
    def fill_checksum(self) -> bool: ...
    @property
    def annotations(self) -> dict[str, Any] | None: ...

@final
class PushResult:
    """The outcome of one :class:`PushItem`."""

    @property
    def key(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def status(self) -> str:
        """``"pushed"`` (manifest accepted), ``"skipped"`` (tag existed) or ``"failed"``."""
    @property
    def manifest_digest(self) -> str | None: ...
    @property
    def manifest_size(self) -> int | None: ...
    @property
    def digest(self) -> str | None:
        """Digest of the item's compressed layer (for a skipped item only when an item of
        the same push stacked it, else None: a no-op re-push reads nothing but the tags)."""
    @property
    def diff_id(self) -> str | None:
        """Digest of the item's uncompressed layer."""
    @property
    def size(self) -> int | None:
        """Size of the compressed layer."""
    @property
    def uploaded(self) -> bool:
        """Whether the layer blob was uploaded by this push."""
    @property
    def throttled(self) -> int:
        """Push-wide: requests the registry refused with 429/503 (rate limiting)."""
    @property
    def throttle_wait(self) -> float:
        """Push-wide: seconds spent waiting for the registry (``Retry-After``, pacing)."""
    @property
    def resumed(self) -> int:
        """Push-wide: uploads continued from an offset in their session after an interruption."""
    @property
    def retries(self) -> int:
        """Push-wide: failed attempts that were tried again."""
    @property
    def relocate_binaries(self) -> list[str] | None: ...
    @property
    def relocate_links(self) -> list[str] | None: ...
    @property
    def relocate_textfiles(self) -> list[str] | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def seconds(self) -> float:
        """Time spent making and uploading the layer."""

def push(
    target: str,
    items: Sequence[PushItem],
    *,
    base_image: str | None = None,
    force: bool = False,
    jobs: int | None = None,
    known_layers: Mapping[str, tuple[str, str, int]] | None = None,
    tags: Sequence[str] | None = None,
    buildinfo_dump: Callable[[dict[str, Any]], bytes | str] | None = None,
    progress: Callable[[str, dict[str, Any]], object] | None = None,
    stream_layers: bool = True,
    tmpdir: _Path | None = None,
    compression: str = "spack",
    sign_key: _Path | None = None,
    client: Client | None = None,
) -> list[PushResult]:
    """Push a whole plan to repository ``target`` with one connection pool and token cache.

    Unless ``force``, tags are listed once and existing items are skipped (their layer info
    is still returned and usable in other items' ``layers``). Layers are made ``jobs`` at a
    time (default: CPUs) and uploaded once per digest; prefixes are archived and streamed
    straight into the upload (``stream_layers=False``: via a temp file in ``tmpdir``).
    Manifests go up only after all their layers are present. One failing item does not stop
    the others; an item is "pushed" only once the registry accepted its manifest. A manifest
    refused because a blob vanished after its upload (``BLOB_UNKNOWN``) gets the missing
    blobs uploaded again (layers re-made from their tarball or prefix, base layers copied
    again) and is sent once more; a blob this push cannot re-make fails the item with an
    error naming its digest.

    Args:
        target: the repository (``oci://host/repo``); item tags replace its tag.
        base_image: an image whose layers go below every item's (copied into ``target``).
        known_layers: key -> ``(digest, diff_id, size)`` of layers pushed before.
        tags: the repository's tags as the caller just listed them (:func:`list_tags`):
            the push does not list them again, and an item whose tag is among them is
            skipped (unless ``force``), its manifest fetched only when an item to push
            stacks its layer.
        buildinfo_dump: serializes a buildinfo dict (Spack: ``syaml.dump(...,
            default_flow_style=True)``); default: JSON.
        compression: ``"spack"`` (default): zlib level 6, byte-identical to Spack's
            tarballs. ``"fast"``: zlib-rs in independent 4 MiB gzip members (a valid gzip
            file every reader takes; the tar and so the diff_id are the same, the compressed
            bytes and digest are not Spack's) at level 4: measured 2.8x faster per core than
            zlib level 6, 2-3% larger.
        progress: called as ``progress(event, info)`` with events ``planned``,
            ``layer_done``, ``layer_failed``, ``manifest_done``, ``manifest_failed``, and
            ``("bytes", {"done", "total"})`` while layers are made, at most every 100 ms and
            once when all are: input bytes, where a prefix's input is the file contents its
            tarball reads (counted as read) and a tarball file's is its length (counted once
            uploaded). ``total`` is summed before the first layer starts and corrected as
            layers end (an estimate until then); ``done`` only grows and ends equal to
            ``total``.
        sign_key: an ECDSA P-256 private key (PKCS#8 PEM): every image whose manifest this
            push uploads is signed cosign's way (see :func:`sign`); its signature's blobs go
            up beside the image's config and its manifest beside the image's. An item whose
            signature fails is failed. The key is read before any request is sent.
    """

# -- Spack-identical build-cache tarballs -------------------------------------------------

@final
class TarballInfo:
    """What :func:`create_tarball` wrote."""

    @property
    def checksum(self) -> str:
        """sha256 hex of the compressed tarball: Spack's ``tar_gz_checksum.hexdigest()``,
        the first value ``_do_create_tarball`` returns."""
    @property
    def uncompressed_checksum(self) -> str:
        """sha256 hex of the uncompressed tar stream: Spack's ``tar_checksum.hexdigest()``,
        the second value ``_do_create_tarball`` returns."""
    @property
    def compressed_digest(self) -> str:
        """``sha256:<hex>`` of the compressed tarball (the OCI layer blob digest)."""
    @property
    def uncompressed_digest(self) -> str:
        """``sha256:<hex>`` of the tar stream (the OCI ``diff_id``)."""
    @property
    def size(self) -> int:
        """Size of the compressed tarball in bytes."""
    @property
    def uncompressed_size(self) -> int:
        """Size of the tar stream in bytes."""
    @property
    def relocate_binaries(self) -> list[str]:
        """ELF and Mach-O files, relative to the prefix, in archive order."""
    @property
    def relocate_links(self) -> list[str]:
        """Symlinks whose absolute target starts with a prefix to relocate, relative to the
        prefix, in archive order."""
    @property
    def relocate_textfiles(self) -> list[str]:
        """Text files containing a prefix to relocate, relative to the prefix, in archive
        order."""

def create_tarball(
    prefix: str | PathLike[str],
    dest: str | PathLike[str],
    *,
    prefixes_to_relocate: Sequence[str],
    buildinfo: dict[str, Any],
    dump: Callable[[dict[str, Any]], bytes | str] | None = None,
) -> TarballInfo:
    """Write the gzip-compressed tarball of an install prefix to ``dest``, byte for byte as
    Spack's ``_do_create_tarball(dest, prefix, buildinfo, prefixes_to_relocate)`` does.

    Members are the prefix's directories, files, symlinks and hard links (deduplicated),
    named by their absolute paths without the leading ``/``, preceded by the directories
    leading to the prefix, in Spack's order, with Spack's normalized metadata; an existing
    ``<prefix>/.spack/binary_distribution`` is left out and the new buildinfo is appended as
    the last member. The prefix is read once; the GIL is released except while ``dump`` runs,
    and Ctrl-C stops the build within about 100 ms (``KeyboardInterrupt``). ``dest`` is written
    through a temporary file in its directory and renamed when complete: on error or
    interruption, nothing is left at ``dest``.

    Args:
        prefix: absolute path of the install prefix (a directory).
        dest: path of the ``.tar.gz`` to write (replaced if it exists).
        prefixes_to_relocate: Spack's ``prefixes_to_relocate(spec)``: the prefixes of the spec
            and of its link and run dependencies, the sbang install path and the store root.
            Text files containing one (per Spack's regex) and absolute symlinks into one are
            listed for relocation. An empty sequence matches everything, as in Spack.
        buildinfo: Spack's ``get_buildinfo_dict(spec)``. It is not modified: a copy,
            ``dict(buildinfo)`` updated with ``relocate_binaries``, ``relocate_links`` and
            ``relocate_textfiles`` (in that order, as Spack's ``buildinfo.update`` does), is
            passed to ``dump``.
        dump: serializes the updated buildinfo to the bytes of the buildinfo member (a
            ``str`` is encoded as UTF-8). For Spack's bytes, pass
            ``lambda d: spack.util.spack_yaml.dump(d, default_flow_style=True)``. Called once,
            with the GIL held, after the prefix has been archived; an exception it raises
            propagates unchanged. ``None``: ``json.dumps`` (JSON is flow-style YAML, but not
            Spack's bytes).

    Returns:
        The checksums, sizes and relocation lists of the tarball.

    Raises:
        spack_oci_rs.exceptions.InvalidArgumentError: ``prefix`` is not absolute or not a
            directory; a file or symlink to relocate has a name that is not UTF-8 (Spack
            would list it surrogate-escaped); an absolute symlink target is not UTF-8 (Spack
            fails too).
        spack_oci_rs.exceptions.LocalFileError: ``prefix`` does not exist; a file or directory
            cannot be read; a file changed size while it was read; ``dest`` cannot be
            written.
    """

# -- signatures (cosign layout) -------------------------------------------------------------

@final
class Verified:
    """A signature :func:`verify` accepted."""

    @property
    def digest(self) -> str:
        """The manifest digest that is signed."""
    @property
    def key(self) -> str:
        """The trusted key that signed it (its path)."""
    @property
    def fingerprint(self) -> str:
        """``sha256:`` of the key's DER SubjectPublicKeyInfo."""

def sign(ref: str, key_path: _Path, *, client: Client | None = None) -> str:
    """Sign the image ``ref`` (tag or digest) with the ECDSA P-256 private key at
    ``key_path`` (PKCS#8 PEM, as ``openssl genpkey -algorithm EC -pkeyopt
    ec_paramgen_curve:P-256`` writes it), cosign's way: a signature image tagged
    ``sha256-<hex>.sig`` whose layer is the simple-signing payload (repository, manifest
    digest, and the tag in ``optional.tag``) with the base64 DER signature in the
    ``dev.cosignproject.cosign/signature`` annotation. Signatures by other keys are kept.
    Returns the manifest digest signed. A key readable by others is warned about."""

def verify(ref: str, public_keys: Sequence[_Path], *, client: Client | None = None) -> Verified:
    """Check that the image ``ref`` is signed by one of ``public_keys`` (SubjectPublicKeyInfo
    PEM files) for this repository, this manifest digest and, when ``ref`` is a tag, this
    tag. Raises :class:`~spack_oci_rs.exceptions.SignatureError` naming the image and why:
    no signature, bad signature (or by another key), signed for another digest, repository or
    tag, a malformed or oversized signature or payload."""

def generate_key_pair(prefix: _Path) -> tuple[str, str]:
    """Write a new ECDSA P-256 key pair to ``PREFIX.key`` (PKCS#8 PEM, mode 0600) and
    ``PREFIX.pub`` (SubjectPublicKeyInfo PEM); neither may exist. Returns both paths."""
