#!/usr/bin/env bash
# The main job on a fresh machine: install the registry (as root, via apt, if missing), build
# the release wheel into .venv-demo, then run scripts/demo.py: a throwaway local registry,
# sample prefixes pushed as a Spack-style build cache, the index built, everything fetched
# back and verified, and a summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-demo"

if ! command -v docker-registry >/dev/null; then
    if [[ $(id -u) == 0 ]]; then
        echo "=== installing docker-registry (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            docker-registry >/dev/null
    else
        echo "error: docker-registry is missing: sudo apt-get install docker-registry" >&2
        exit 1
    fi
fi
command -v cargo >/dev/null || { echo "error: a Rust toolchain (cargo) is needed" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "=== creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin>=1.9,<2"
fi
# cargo's progress stays on (the first build compiles ~200 crates: about 5 minutes on 2
# cores, see README); later runs reuse target/ and take seconds.
echo "=== building and installing the release wheel (cargo's progress below)"
rm -rf "$ROOT/dist-demo"
"$VENV/bin/maturin" build --release -o "$ROOT/dist-demo" --interpreter "$VENV/bin/python"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
    "$ROOT"/dist-demo/spack_oci_rs-*.whl
echo "=== demo"
exec "$VENV/bin/python" "$ROOT/scripts/demo.py"
