#!/usr/bin/env bash
# Build the release artifacts into dist/: the sdist and abi3 wheels tagged manylinux2014
# (glibc 2.17) for x86_64 and aarch64, cross-built on this machine with maturin + zig, then
# check both wheels (scripts/check_wheel.py: auditwheel, no GLIBC_ symbol version above 2.17).
#
#   ./scripts/build-wheel.sh                 both wheels and the sdist
#   ./scripts/build-wheel.sh x86_64          only the listed architectures (and the sdist)
#
# The build tools live in their own venv (.venv-build, or $SPACK_OCI_RS_BUILD_VENV) from
# scripts/requirements-build.txt, so the test venv stays as it is. Needs rustup (the targets
# are added here, idempotent) and readelf (binutils).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(realpath -m -s "${SPACK_OCI_RS_BUILD_VENV:-$ROOT/.venv-build}")"
REQS="$ROOT/scripts/requirements-build.txt"
ARCHES=("$@")
[[ ${#ARCHES[@]} -eq 0 ]] && ARCHES=(x86_64 aarch64)

say() { printf '\n=== [%4ds] %s\n' "$SECONDS" "$*"; }

for arch in "${ARCHES[@]}"; do
    case "$arch" in
        x86_64 | aarch64) ;;
        *) echo "error: unknown architecture '$arch' (x86_64 or aarch64)" >&2; exit 2 ;;
    esac
done
command -v rustup >/dev/null || { echo "error: rustup is needed (it adds the targets)" >&2; exit 1; }
command -v readelf >/dev/null || { echo "error: readelf is needed (apt-get install binutils)" >&2; exit 1; }

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    say "build venv $VENV (maturin, ziglang, auditwheel)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
    echo "$want" >"$stamp"
fi
export PATH="$VENV/bin:$PATH" # maturin --zig finds zig through the ziglang package here

rm -rf "$ROOT/dist"
say "sdist"
maturin sdist -o "$ROOT/dist"
for arch in "${ARCHES[@]}"; do
    target="$arch-unknown-linux-gnu"
    rustup target add "$target" >/dev/null
    say "wheel for $target (maturin --zig, manylinux2014)"
    maturin build --release --zig --target "$target" --compatibility manylinux2014 -o "$ROOT/dist"
done
say "checking the wheels"
"$VENV/bin/python" "$ROOT/scripts/check_wheel.py" --max-glibc 2.17 "$ROOT"/dist/*.whl
ls -l "$ROOT/dist"
