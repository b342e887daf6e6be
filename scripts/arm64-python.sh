#!/usr/bin/env bash
# Make a sysroot with Debian's arm64 CPython (the distribution's own .debs, multiarch) for
# running the aarch64 wheel under qemu user-mode emulation on an x86_64 Debian machine:
#
#   ./scripts/arm64-python.sh [SYSROOT]     default: .arm64-sysroot (printed at the end)
#   qemu-aarch64 -L SYSROOT SYSROOT/usr/bin/python3 -c 'import platform; print(platform.machine())'
#
# As root: adds the arm64 architecture to dpkg, `apt-get update`, installs qemu-user if
# missing, then `apt-get download`s the arm64 packages and unpacks them with `dpkg -x` (no
# arm64 package is installed on the machine). Idempotent: an existing sysroot is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYSROOT="$(realpath -m "${1:-$ROOT/.arm64-sysroot}")"
PY=python3.11
# The interpreter, its standard library and the shared libraries they and the wheel load.
PACKAGES=("$PY-minimal" "lib$PY-minimal" "lib$PY-stdlib" libc6 libgcc-s1 zlib1g libssl3
    libexpat1 libffi8 libbz2-1.0 liblzma5 libuuid1 libcrypt1 libzstd1)

if [[ -x "$SYSROOT/usr/bin/$PY" && -f "$SYSROOT/.complete" ]]; then
    echo "$SYSROOT"
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "error: run as root (dpkg --add-architecture, apt-get)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
fi
apt-get update -qq
command -v qemu-aarch64 >/dev/null || apt-get install -y -qq --no-install-recommends qemu-user >/dev/null

rm -rf "$SYSROOT"
mkdir -p "$SYSROOT/.debs" && chmod 0777 "$SYSROOT/.debs" # apt-get download runs as _apt
(cd "$SYSROOT/.debs" && apt-get download -qq "${PACKAGES[@]/%/:arm64}")
for deb in "$SYSROOT"/.debs/*.deb; do
    dpkg -x "$deb" "$SYSROOT"
done
rm -rf "$SYSROOT/.debs"
ln -sf "$PY" "$SYSROOT/usr/bin/python3"
# Check it runs, then mark the sysroot complete.
qemu-aarch64 -L "$SYSROOT" "$SYSROOT/usr/bin/python3" -c \
    'import platform, hashlib, json, ssl; assert platform.machine() == "aarch64", platform.machine()' >&2
touch "$SYSROOT/.complete"
echo "$SYSROOT"
