"""spack-oci-rs: a Rust engine for Spack's OCI build caches.

The functions below release the GIL while they work and raise the exceptions of
:mod:`spack_oci_rs.exceptions`. See ``_native.pyi`` for every argument.

The engine logs to the :mod:`logging` logger ``spack_oci_rs`` (requests at DEBUG: method,
URL, status, time, never headers; retries at INFO). Levels are cached on the Rust side: call
:func:`reset_logging` after changing them.
"""

from __future__ import annotations

from . import _native, exceptions
from ._native import *  # noqa: F403 (what `_native.__all__` names)
from .exceptions import *  # noqa: F403 (what `exceptions.__all__` names)

__all__ = ["exceptions"]
__all__ += _native.__all__
__all__ += exceptions.__all__
