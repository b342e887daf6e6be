"""Run inside a Spack tree's Python (``sys.path`` gets ``<tree>/lib/spack``): write the index
of a list of configs with Spack's own ``BuildCacheDatabase`` (as ``_oci_update_index`` does)
and with the engine, and print both as JSON (hex bytes) for the test to compare.

Usage: ``python index_oracle.py SPACK_TREE CONFIGS.json`` where the file holds
``[[tag, config text], ...]`` and ``{"split": k}`` asks for a merge check too.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile


def spack_index(configs: list[bytes]) -> bytes:
    import spack.binary_distribution as bindist
    import spack.spec

    db = bindist.BuildCacheDatabase(tempfile.mkdtemp())
    for config in configs:
        spec = spack.spec.Spec.from_dict(json.loads(config))
        db.add(spec)
        db.mark(spec, "in_buildcache", True)
    out = io.StringIO()
    db._write_to_file(out)
    return out.getvalue().encode()


def main() -> None:
    tree, path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, f"{tree}/lib/spack")
    from spack_oci_rs import spack_index as ours

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    configs = [(t, c.encode()) for t, c in data["configs"]]
    split = data["split"]
    python = spack_index([c for _, c in configs])
    rust, skipped = ours.index_json(configs)
    head = spack_index([c for _, c in configs[:split]])
    merged, _ = ours.index_json(configs[split:], previous=head)
    rust_alone, skipped_alone = ours.engine.index_json(configs, targets=ours.targets_json())
    print(
        json.dumps(
            {
                "python": python.hex(),
                "rust": rust.hex(),
                "merged": merged.hex(),
                "skipped": skipped,
                "skipped_without_spack": skipped_alone,
                "rust_without_spack_len": len(rust_alone),
            }
        )
    )


if __name__ == "__main__":
    main()
