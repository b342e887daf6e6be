#!/usr/bin/env bash
# Run the whole test suite: `cargo test`, then pytest against the INSTALLED wheel.
#
#   ./scripts/test.sh                  build the release wheel, install it into .venv-ci, test
#   ./scripts/test.sh -k push -x       extra arguments go to pytest
#   ./scripts/test.sh --no-build       test the wheel already installed in the venv
#   ./scripts/test.sh --python-only    skip `cargo test` (or --rust-only: skip pytest)
#   ./scripts/test.sh --no-spack       skip the Spack suites (below)
#
# The Spack suites: for each Spack tree in ../shared/spack (or $SPACK_OCI_RS_SPACK_TARBALLS:
# spack-v1.0.2, spack-v1.1.0 and spack-develop .tar.xz, checked against SHA256SUMS), extracted
# unchanged into a temporary directory, with the wheel (and so the zero-patch plugin) installed
# in the interpreter that runs Spack: the Spack test files of tests/ against that tree, then
# Spack's own OCI unit tests twice (toggle python; dispatch active as with rust). Without the
# tarballs they are skipped with a note (CI: an error).
#
# The venv (.venv-ci, or $SPACK_OCI_RS_VENV) is created with the tools of
# scripts/requirements-test.txt when missing or when that file changed. pytest runs from the
# venv's `pytest` script with --import-mode=importlib, so neither the repository root nor
# python/ is on sys.path: `import spack_oci_rs` must find the wheel in the venv, which is
# checked before the tests run. Exit code 5 (no tests collected) counts as a failure.
#
# The registry tests need docker-registry, skopeo, openssl and htpasswd on PATH (see .ci/run
# for the apt-get line); without them they are skipped, or fail when CI is set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$(realpath -m -s "${SPACK_OCI_RS_VENV:-$ROOT/.venv-ci}")"
REQS="$ROOT/scripts/requirements-test.txt"

build=1
run_rust=1
run_python=1
run_spack=1
pytest_args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --python-only) run_rust=0 ;;
        --rust-only) run_python=0 ;;
        --no-spack) run_spack=0 ;;
        *) pytest_args+=("$arg") ;;
    esac
done
[[ "${SPACK_OCI_RS_SKIP_BUILD:-}" == 1 ]] && build=0

say() { printf '\n=== [%4ds] %s\n' "$SECONDS" "$*"; }

#: The Spack test files of tests/, run once per Spack tree; on v1.1.0 only: Spack under
#: registry faults (~2.5 min). tests/test_spack_harness.py (Spack's own backend) runs by hand.
SPACK_TESTS=(tests/test_spack_e2e.py tests/test_spack_plugin.py tests/test_readme.py
    tests/test_tarball_spack.py tests/test_patch.py tests/test_spack_cli.py
    tests/test_spack_signing.py)
HARNESS_TESTS=(tests/test_spack_faults.py)
SPACK_VERSIONS=(v1.0.2 v1.1.0 develop)

# The registry tests need these; as root on Debian/Ubuntu, install what is missing (CI's
# .ci/run does the same first), otherwise those tests are skipped with the reason.
ensure_system_tools() {
    local missing=()
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v skopeo >/dev/null || missing+=(skopeo)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v htpasswd >/dev/null || missing+=(apache2-utils)
    if [[ ${#missing[@]} -gt 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    elif [[ ${#missing[@]} -gt 0 ]]; then
        echo "note: ${missing[*]} missing: the registry tests will be skipped" >&2
    fi
}

ensure_venv() {
    local stamp="$VENV/.requirements.sha256" want
    want="$(sha256sum "$REQS" | cut -d' ' -f1)"
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        say "installing test tools into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
        echo "$want" >"$stamp"
    fi
}

build_and_install_wheel() {
    say "building the release wheel (maturin build --release -o dist/)"
    rm -f "$ROOT"/dist/spack_oci_rs-*.whl
    "$VENV/bin/maturin" build --release -o "$ROOT/dist" --interpreter "$VENV/bin/python"
    local wheels=("$ROOT"/dist/spack_oci_rs-*.whl)
    if [[ ${#wheels[@]} -ne 1 || ! -f "${wheels[0]}" ]]; then
        echo "expected exactly one wheel in dist/, found: ${wheels[*]}" >&2
        exit 1
    fi
    say "installing ${wheels[0]##*/} into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --force-reinstall --no-deps "${wheels[0]}"
}

if [[ $run_python == 1 ]]; then
    ensure_system_tools
    ensure_venv
    if [[ $build == 1 ]]; then
        build_and_install_wheel
    fi
fi

if [[ $run_rust == 1 ]]; then
    say "cargo test"
    cargo test
fi

check_installed_module() {
    # Import from a neutral directory: prove the module comes from the venv, not python/.
    local module_file
    module_file="$(cd / && "$VENV/bin/python" -c 'import spack_oci_rs; print(spack_oci_rs.__file__)')"
    echo "spack_oci_rs imported from: $module_file"
    case "$module_file" in
        "$VENV"/*) ;;
        *)
            echo "error: spack_oci_rs is not the wheel installed in $VENV" >&2
            exit 1
            ;;
    esac
}

run_pytest() {
    local rc=0
    SPACK_OCI_RS_EXPECT_INSTALLED="$VENV" \
        "$VENV/bin/pytest" --import-mode=importlib "$@" || rc=$?
    if [[ $rc == 5 ]]; then
        echo "error: pytest collected no tests" >&2
        return 1
    fi
    return "$rc"
}

# One Spack tree: the Spack test files of tests/, then Spack's own OCI unit tests twice.
spack_suite() {
    local root="$1" version="$2" tests=("${SPACK_TESTS[@]}")
    [[ $version == v1.1.0 ]] && tests+=("${HARNESS_TESTS[@]}")
    say "Spack $version: ${tests[*]} (SPACK_ROOT=$root)"
    SPACK_ROOT="$root" SPACK_PYTHON="$VENV/bin/python" SPACK_OCI_RS_REQUIRE_SPACK=1 \
        run_pytest "${tests[@]/#/$ROOT/}" -p no:cacheprovider ${pytest_args[@]+"${pytest_args[@]}"}
    # Spack's unit tests in an isolated config (tests/spack_env.py: no builtin repository to
    # clone, caches in the temp dir); they need bootstrapping on (clingo is importable).
    local exports unit=(-c bootstrap:enable:true unit-test lib/spack/spack/test/oci -p no:cacheprovider)
    exports="$(SPACK_ROOT="$root" SPACK_PYTHON="$VENV/bin/python" \
        "$VENV/bin/python" "$ROOT/tests/spack_env.py" "$spack_tmp/unit-$version" | grep '^export ')"
    say "Spack $version: spack unit-test lib/spack/spack/test/oci (toggle python)"
    (eval "$exports" && cd "$root" && env -u PYTHONDONTWRITEBYTECODE bin/spack "${unit[@]}")
    say "Spack $version: spack unit-test lib/spack/spack/test/oci (dispatch active, as rust;" \
        "without integration_test.py, whose mock registries live in Spack's own urlopen)"
    (eval "$exports" && cd "$root" && env -u PYTHONDONTWRITEBYTECODE PYTHONPATH="$ROOT/tests" \
        bin/spack "${unit[@]}" -p spack_unit_rust --ignore=lib/spack/spack/test/oci/integration_test.py)
}

run_spack_suites() {
    local tarballs="${SPACK_OCI_RS_SPACK_TARBALLS:-$ROOT/../shared/spack}"
    if [[ ! -f "$tarballs/SHA256SUMS" ]]; then
        if [[ -n "${CI:-}" ]]; then
            echo "error: no Spack trees at $tarballs (CI runs the Spack suites)" >&2
            exit 1
        fi
        echo "note: no Spack trees at $tarballs: the Spack suites are not run" >&2
        return 0
    fi
    (cd "$tarballs" && sha256sum --quiet -c SHA256SUMS)
    spack_tmp="$(mktemp -d "${TMPDIR:-/tmp}/spack-oci-rs-trees.XXXXXX")"
    trap 'rm -rf "$spack_tmp"' EXIT
    local version
    for version in "${SPACK_VERSIONS[@]}"; do
        say "Spack $version: extracting $tarballs/spack-$version.tar.xz"
        tar -xJf "$tarballs/spack-$version.tar.xz" -C "$spack_tmp"
        spack_suite "$spack_tmp/spack-$version" "$version"
    done
}

if [[ $run_python == 1 ]]; then
    say "pytest (installed wheel)"
    check_installed_module
    ignore=()
    if [[ $run_spack == 1 ]]; then
        ignore=("${SPACK_TESTS[@]/#/--ignore=$ROOT/}" "${HARNESS_TESTS[@]/#/--ignore=$ROOT/}")
    fi
    run_pytest "$ROOT/tests" "${ignore[@]}" ${pytest_args[@]+"${pytest_args[@]}"}
    if [[ $run_spack == 1 ]]; then
        run_spack_suites
    fi
fi
