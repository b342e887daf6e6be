"""Synthetic build-cache image configs for the index database tests.

Spec dicts are made directly (no concretizer): a random DAG of nodes with everything Spack's
``Spec.from_dict`` / ``node_dict_with_hashes`` round trip touches (variants of every kind,
compiler flags, patches, externals, build specs, virtuals, ``direct`` edges, generic and
archspec targets in string and dict form, non-ASCII text), plus old-format specs that need
Spack's own reader.
"""

from __future__ import annotations

import json
import random
from typing import Any

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_TARGETS = ["x86_64", "haswell", "icelake", "zen3", "aarch64", "neoverse_v1", "weird_cpu"]
_DEPTYPES = [["build"], ["link"], ["build", "link"], ["run"], ["build", "link", "run"], ["test"]]


def _hash(rng: random.Random) -> str:
    return "".join(rng.choice(_B32) for _ in range(32))


def _target(rng: random.Random) -> Any:
    name = rng.choice(_TARGETS)
    if rng.random() < 0.4:
        # An old dict form (any features): Spack rewrites it from its own archspec.
        features = ["b", "a"]
        return {"name": name, "vendor": "x", "features": features, "generation": 0, "parents": []}
    return name


def _parameters(rng: random.Random, i: int) -> dict[str, Any]:
    p: dict[str, Any] = {"build_system": rng.choice(["generic", "cmake", "autotools"])}
    kinds: list[Any] = [
        True,
        False,
        "true",
        "False",
        "release",
        7,
        ["b", "a", "b"],
        ["only"],
        [],
        "naïve-ünicode",
    ]
    for k in rng.sample(["shared", "zeta", "alpha", "libs", "mode", "Opt", "x_y"], 3):
        p[k] = rng.choice(kinds)
    for flag in rng.sample(["cflags", "cxxflags", "ldflags", "fflags", "cppflags", "ldlibs"], 2):
        p[flag] = rng.choice([[], ["-O2", "-g"], ["-O3 -march=native"], ["-O2", "-O2"]])
    if i % 7 == 0:
        p["patches"] = ["f" * 64, "0" * 64]
    return dict(sorted(p.items())) if rng.random() < 0.5 else p


def _node(rng: random.Random, i: int, h: str, deps: list[tuple[str, str]]) -> dict[str, Any]:
    version = rng.choice(["1.0", "2.3.4", "git.abc=1.2"])
    n: dict[str, Any] = {"name": f"pkg-{i}", "version": version}
    n["arch"] = {"platform": "linux", "platform_os": "debian12", "target": _target(rng)}
    if rng.random() < 0.9:
        n["namespace"] = "builtin"
    n["parameters"] = _parameters(rng, i)
    if i % 7 == 0:
        n["patches"] = ["f" * 64, "0" * 64]
    if i % 11 == 5:
        n["external"] = {
            "path": "/usr",
            "module": rng.choice([False, None, ["mod/1"]]),
            "extra_attributes": {"z": 1, "a": {"d": [{"y": 1, "b": 2}], "c": None}},
        }
    if rng.random() < 0.9:
        n["package_hash"] = _hash(rng) + "=" * 4
    if deps:
        edges = [
            {
                "name": name,
                "hash": dh,
                "parameters": {
                    "deptypes": rng.choice(_DEPTYPES),
                    "virtuals": rng.choice([[], ["mpi"], ["lapack", "blas", "blas"]]),
                    **({"direct": True} if rng.random() < 0.5 else {}),
                },
            }
            for name, dh in deps
        ]
        if rng.random() < 0.5:
            edges.sort(key=lambda e: e["name"])
        n["dependencies"] = edges
    n["annotations"] = {"original_specfile_version": 5}
    n["hash"] = h
    return n


def _closure(nodes: list[dict[str, Any]], by_hash: dict[str, dict[str, Any]], root: str) -> list:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    todo = [root]
    while todo:
        h = todo.pop(0)
        if h in seen:
            continue
        seen.add(h)
        out.append(by_hash[h])
        todo.extend(d["hash"] for d in by_hash[h].get("dependencies", []))
    return out


def _config(nodes: list[dict[str, Any]]) -> bytes:
    return json.dumps({"spec": {"_meta": {"version": 5}, "nodes": nodes}}).encode()


def _v4_config(rng: random.Random) -> bytes:
    """A specfile-format-4 spec (Spack 0.22): no annotations, a compiler per node."""
    dep_hash, root_hash = _hash(rng), _hash(rng)
    compiler = {"name": "gcc", "version": "12.3.0"}
    dep = {"name": "old-dep", "version": "1.0", "namespace": "builtin", "compiler": compiler}
    dep.update({"arch": {"platform": "linux", "platform_os": "debian12", "target": "haswell"}})
    dep.update({"parameters": {"build_system": "generic", "cflags": []}, "hash": dep_hash})
    root = json.loads(json.dumps(dep))
    root.update({"name": "old-root", "hash": root_hash})
    root["dependencies"] = [
        {"name": "old-dep", "hash": dep_hash, "parameters": {"deptypes": ["link"], "virtuals": []}}
    ]
    return json.dumps({"spec": {"_meta": {"version": 4}, "nodes": [root, dep]}}).encode()


def corpus(seed: int = 18, count: int = 60) -> list[tuple[str, bytes]]:
    """(tag, config bytes) in tag order, as ``_oci_update_index`` would read them."""
    rng = random.Random(seed)
    hashes = [_hash(rng) for _ in range(count)]
    nodes: list[dict[str, Any]] = []
    for i, h in enumerate(hashes):
        below = list(range(i))
        picks = rng.sample(below, min(len(below), rng.randint(0, 4)))
        deps = [(f"pkg-{j}", hashes[j]) for j in picks]
        nodes.append(_node(rng, i, h, deps))
    by_hash = {n["hash"]: n for n in nodes}
    # A build spec: pkg-3 was spliced, built as pkg-2.
    nodes[3]["build_spec"] = {"name": "pkg-2", "hash": hashes[2]}
    configs = []
    for i in rng.sample(range(count), count * 2 // 3):
        closure = _closure(nodes, by_hash, hashes[i])
        if i == 3:
            closure += [n for n in _closure(nodes, by_hash, hashes[2]) if n not in closure]
        configs.append((f"pkg-{i}-1.0-{hashes[i]}.spack", _config(closure)))
    configs.append((f"old-root-1.0-{_hash(rng)}.spack", _v4_config(rng)))
    return sorted(configs)


def flat_corpus(count: int, seed: int = 1, base: int = 30) -> list[tuple[str, bytes]]:
    """``count`` spec configs of the shape of a large cache: each spec stacks 2-5 of ``base``
    shared dependencies (runtimes, zlib, ...), which have none; tag order."""
    rng = random.Random(seed)
    base_nodes = [_node(rng, 100_000 + i, _hash(rng), []) for i in range(base)]
    configs = []
    for i in range(count):
        deps = rng.sample(base_nodes, rng.randint(2, 5))
        h = _hash(rng)
        root = _node(rng, i, h, [(d["name"], d["hash"]) for d in deps])
        configs.append((f"pkg-{i}-1.0-{h}.spack", _config([root, *deps])))
    return sorted(configs)
