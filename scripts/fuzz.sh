#!/usr/bin/env bash
# Runs every PortWatch fuzz target for a bounded time and fails on any crash,
# verifier violation, leak or contract mismatch (each is a libFuzzer crash).
#
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh ioctl_decode    one target
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# Targets (fuzz/fuzz_targets): ioctl_sequence (IOCTL programs against the
# real portwatch.sys in the harness), ioctl_decode and frame_classify (the
# host builds of the driver's decoder and parser). Each starts from the
# committed seeds in fuzz/seeds/<target>; new inputs go to fuzz/corpus/
# (ignored by git), crashes to fuzz/artifacts/<target>/.
#
# Needs the nightly toolchain and cargo-fuzz (installed here when missing),
# and for ioctl_sequence the driver image (built here when missing).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=${FUZZ_SECONDS:-60}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ioctl_decode frame_classify ioctl_sequence)

log() { echo "fuzz: $*" >&2; }

command -v cargo-fuzz >/dev/null || { log "installing cargo-fuzz"; cargo install cargo-fuzz --locked; }
rustup toolchain list | grep -q '^nightly' || { log "installing the nightly toolchain"; rustup toolchain install nightly --profile minimal; }

# The harness loads the real driver: build it unless one is given.
if [[ -z ${PORTWATCH_DRIVER:-} ]]; then
    cargo build -p portwatch --target x86_64-pc-windows-msvc --profile driver --target-dir "$root/target"
    export PORTWATCH_DRIVER="$root/target/x86_64-pc-windows-msvc/driver/portwatch.dll"
fi

sanitizer() {
    # The harness catches guard-page faults with its own SIGSEGV handler,
    # which AddressSanitizer's would replace; the others are safe Rust.
    case $1 in
        ioctl_sequence) echo none ;;
        *) echo address ;;
    esac
}

chunk() {
    # The harness does not give back all memory of a loaded-and-unloaded
    # driver (about 45 KB per input), so ioctl_sequence runs in fresh
    # processes of at most two minutes each, sharing the corpus.
    case $1 in
        ioctl_sequence) echo 120 ;;
        *) echo "$seconds" ;;
    esac
}

run_target() {
    local t=$1 san left step
    san=$(sanitizer "$t")
    left=$seconds
    while (( left > 0 )); do
        step=$(chunk "$t")
        if (( step > left )); then step=$left; fi
        # One build folder per sanitizer: switching flags in one folder
        # would rebuild everything each time.
        cargo +nightly fuzz run --sanitizer "$san" --target-dir "fuzz/target/$san" --fuzz-dir fuzz \
            "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
            -max_total_time="$step" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 || return 1
        left=$(( left - step ))
    done
}

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log "$t: ${seconds}s"
    start=$(date +%s)
    if run_target "$t"; then
        log "$t: no crash in $(( $(date +%s) - start ))s"
    else
        log "$t: FAILED (artifacts in fuzz/artifacts/$t)"
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed: ${failed[*]}"
    exit 1
fi
log "all targets clean"
