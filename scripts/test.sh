#!/usr/bin/env bash
# Runs every PortWatch test on Linux, installing what it needs first:
#   1. formatting and clippy (warnings are errors) on every crate
#   2. clippy of portwatch.exe for x86_64-pc-windows-gnu; the driver package
#      (scripts/package.sh: cross-built, test-signed .sys, stamped .inf,
#      signed catalog verified with osslsigncode -catalog, PDB, README.txt,
#      portwatch.exe)
#   3. the harness fixture drivers, built for the kernel target
#   4. cargo test of the whole workspace: unit, doc and compile-fail tests,
#      the ndis-sys import check, the package's PE, INF, catalog, PDB and
#      recipe checks (tests/package), portwatch.exe's argv tests and the
#      packaged portwatch.exe under Wine (--help, status), the names in
#      scripts and docs against the tool, and the
#      harness running the real portwatch.sys under its Driver Verifier model
#   5. the mutation suite's fast subset (scripts/mutants.sh --fast): planted
#      driver bugs, each rebuilt into a portwatch.sys that the harness must
#      catch, and the harmless control that it must not
#   6. loom models of the ndis-sync guards
#   7. Miri over the ndis-sync host tests
#   8. every fuzz target for a bounded time (FUZZ_SECONDS, default 60 each)
# Exits non-zero on the first failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
triple=x86_64-pc-windows-msvc
# portwatch.exe, the user-mode Windows tool, is cross-built with mingw-w64.
tool_triple=x86_64-pc-windows-gnu

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_prerequisites() {
    step "prerequisites"
    rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
    rustup target list --installed | grep -qx "$tool_triple" || rustup target add "$tool_triple"
    rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed | grep -q '^clippy' || rustup component add clippy
    local missing=()
    command -v osslsigncode >/dev/null || missing+=(osslsigncode)
    command -v openssl >/dev/null || missing+=(openssl)
    # A C compiler: the PowerShell syntax check compiles its tree-sitter grammar.
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    # mingw-w64's import libraries list what ntoskrnl.exe and ndis.sys export.
    [[ -f /usr/x86_64-w64-mingw32/lib/libndis.a ]] || missing+=(mingw-w64-x86-64-dev)
    # portwatch.exe: mingw-w64's linker; Wine runs it in cargo test.
    command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
    command -v wine >/dev/null || missing+=(wine wine64)
    # tests/bench: the data path's instruction budgets and the harness-overhead
    # check count instructions under callgrind.
    command -v valgrind >/dev/null || missing+=(valgrind)
    if [[ ${#missing[@]} -gt 0 ]]; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    if ! rustup toolchain list | grep -q '^nightly'; then
        rustup toolchain install nightly --profile minimal
    fi
    rustup +nightly component list --installed | grep -q '^miri' || rustup +nightly component add miri rust-src
}

install_prerequisites

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host crates, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "clippy of the kernel build"
cargo clippy -p portwatch -p ndis-sync -p ndis-sys -p verifier-fixture -p lwf-fixture -p bench-fixture -p passthrough-fixture --target "$triple" --profile driver -- -D warnings

step "clippy of portwatch.exe for $tool_triple (warnings are errors)"
cargo clippy -p portwatch-cli --target "$tool_triple" -- -D warnings

step "driver package"
scripts/package.sh

step "fixture drivers (harness, benchmarks)"
cargo build -p verifier-fixture -p lwf-fixture -p bench-fixture -p passthrough-fixture --target "$triple" --profile driver

step "cargo test (workspace)"
# The Wine test runs the packaged portwatch.exe instead of building its own.
PORTWATCH_EXE="$root/target/package/portwatch/portwatch.exe" cargo test --workspace

step "mutation suite: fast subset and control (scripts/mutants.sh)"
scripts/mutants.sh --fast
scripts/mutants.sh --control

step "loom models of ndis-sync"
RUSTFLAGS="--cfg loom" cargo test -p ndis-sync --release --target-dir target/loom --test loom

step "Miri: ndis-sync host tests"
MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p ndis-sync --target-dir target/miri
# The driver's CLEANUP pattern (storage freed right after run_down while the
# last guard is still in its drop), under both aliasing models, many schedules.
MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-many-seeds=0..16" \
    cargo +nightly miri test -p ndis-sync --target-dir target/miri --test rundown owner_frees
MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-tree-borrows -Zmiri-many-seeds=0..16" \
    cargo +nightly miri test -p ndis-sync --target-dir target/miri --test rundown owner_frees

step "fuzzing: ${FUZZ_SECONDS:-60} s per target"
FUZZ_SECONDS=${FUZZ_SECONDS:-60} scripts/fuzz.sh

step "all tests passed"
