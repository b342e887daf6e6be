"""What the engine's index database asks of Spack's spec logic.

The engine writes Spack's build-cache ``index.json`` itself (``spack_oci_rs.index_json`` and
the index update calls); it needs two things only the running Spack knows:

- the microarchitecture targets of its archspec, as ``ArchSpec.to_dict`` writes them
  (:func:`targets_json`);
- the records of a spec it cannot read alone (specfile formats older than 5, version lists,
  ...), made by Spack's own ``BuildCacheDatabase`` (:func:`spack_records`).

Works with Spack v1.0.2, v1.1.0 and develop; importing it does not import Spack, calling it
does.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import spack_oci_rs as engine

__all__ = ["index_json", "spack_records", "targets_json"]

_TARGETS: list[str] = []


def targets_json() -> str:
    """``{name: target dict}`` of every non-generic target of this Spack's archspec, exactly
    as ``spack.spec.ArchSpec.to_dict`` writes it (generic targets are written as strings)."""
    if not _TARGETS:
        import spack.spec
        import spack.vendor.archspec.cpu

        table = {}
        for name in spack.vendor.archspec.cpu.TARGETS:
            target = spack.spec.ArchSpec(("linux", "any", name)).to_dict()["arch"]["target"]
            if not isinstance(target, str):
                table[name] = target
        _TARGETS.append(json.dumps(table, separators=(",", ":")))
    return _TARGETS[0]


def spack_records(config: bytes) -> str:
    """The records Spack's ``BuildCacheDatabase.add`` makes for the spec of ``config``, in
    creation order, as ``{"root": hash, "records": [[hash, node, [child hash, ...]], ...]}``
    (the engine's fallback for specs it cannot read alone)."""
    import spack.binary_distribution as bindist
    import spack.database
    import spack.spec

    spec = spack.spec.Spec.from_dict(json.loads(config))
    db = bindist.BuildCacheDatabase(os.path.join(tempfile.gettempdir(), "spack-oci-rs-db"))
    db.add(spec)
    depflag = spack.database._TRACKED_DEPENDENCIES
    originals: dict[str, Any] = {}
    todo = [spec]
    while todo:
        s = todo.pop()
        if s.dag_hash() not in originals:
            originals[s.dag_hash()] = s
            todo.extend(e.spec for e in s.edges_to_dependencies(depflag=depflag))
    records = [
        [
            h,
            rec.spec.node_dict_with_hashes(),
            [e.spec.dag_hash() for e in originals[h].edges_to_dependencies(depflag=depflag)],
        ]
        for h, rec in db._data.items()
    ]
    return json.dumps({"root": spec.dag_hash(), "records": records})


def index_json(
    configs: list[tuple[str, bytes]], *, previous: bytes | None = None
) -> tuple[bytes, list[tuple[str, str]]]:
    """Spack's ``index.json`` for ``configs`` (name, image config bytes) written by the
    engine, as ``_oci_update_index`` writes it; and the (name, reason) of configs left out."""
    return engine.index_json(
        configs, targets=targets_json(), spack_records=spack_records, previous=previous
    )
