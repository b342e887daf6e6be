"""``python -m spack_oci_rs``: the ``spack-oci-rs`` command."""

import sys

from .cli import main

sys.exit(main())
