"""Type stubs of ``create_tarball`` and ``TarballInfo`` (defined in ``spack_oci_rs._native``).

``create_tarball`` is Spack v1.1.0's ``binary_distribution._do_create_tarball`` in Rust: the
same tarball, byte for byte, with the GIL released while it works.
"""

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any, final

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
