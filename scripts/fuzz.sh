#!/usr/bin/env bash
# Runs every PortWatch fuzz target for a bounded time and fails on any crash,
# verifier violation, leak, contract mismatch or memory growth past the
# limit (each is a libFuzzer crash).
#
#   scripts/fuzz.sh                       every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh ioctl_decode          one target
#   FUZZ_SECONDS=3600 scripts/fuzz.sh ioctl_sequence   the long mode
#   FUZZ_SEED=1234 scripts/fuzz.sh        a chosen seed (printed on every run)
#   scripts/fuzz.sh --reproduce ioctl_sequence fuzz/artifacts/ioctl_sequence/crash-…
#                                         runs one saved input again (REPRO_RUNS times,
#                                         default 1), with a step trace
#
# Targets (fuzz/fuzz_targets): ioctl_sequence (IOCTL programs against the
# real portwatch.sys in the harness), ioctl_threads (concurrent programs on
# several handles and threads, with traffic and adapter state changes),
# ioctl_decode and frame_classify (the host builds of the driver's decoder
# and parser; the parser against an independent decoder). Each starts from
# the committed seeds in fuzz/seeds/<target>; new inputs go to fuzz/corpus/
# (ignored by git), crashes to fuzz/artifacts/<target>/.
#
# The seed is FUZZ_SEED, or 1 when CI is set, or random; it is printed
# first. Each target runs in one process for its whole time; its resident
# memory and mapping count are sampled every SAMPLE_SECONDS (default 10)
# into fuzz/stats/<target>.tsv and the first and last samples are printed,
# so a long run shows it stays flat.
#
# Needs the nightly toolchain and cargo-fuzz (installed here when missing),
# and for the harness targets the driver image (built here when missing).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

log() { echo "fuzz: $*" >&2; }

reproduce=""
if [[ ${1:-} == --reproduce ]]; then
    [[ $# -eq 3 ]] || { log "usage: scripts/fuzz.sh --reproduce <target> <input file>"; exit 2; }
    reproduce=$3
    set -- "$2"
fi

seconds=${FUZZ_SECONDS:-60}
sample_every=${SAMPLE_SECONDS:-10}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(ioctl_decode frame_classify ioctl_sequence ioctl_threads)

if [[ -n ${FUZZ_SEED:-} ]]; then
    seed=$FUZZ_SEED
elif [[ -n ${CI:-} ]]; then
    seed=1
else
    seed=$(( (RANDOM << 15 | RANDOM) + 1 ))
fi

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
        ioctl_sequence | ioctl_threads) echo none ;;
        *) echo address ;;
    esac
}

fuzz_cmd() {
    # One build folder per sanitizer: switching flags in one folder would
    # rebuild everything each time.
    local t=$1 san
    san=$(sanitizer "$t")
    echo cargo +nightly fuzz run --sanitizer "$san" --target-dir "fuzz/target/$san" --fuzz-dir fuzz "$t"
}

if [[ -n $reproduce ]]; then
    t=${targets[0]}
    log "reproducing $reproduce on $t (PORTWATCH_FUZZ_TRACE=1 prints every step)"
    # shellcheck disable=SC2046 # fuzz_cmd's words are the command
    PORTWATCH_FUZZ_TRACE=${PORTWATCH_FUZZ_TRACE:-1} $(fuzz_cmd "$t") "$reproduce" -- -runs="${REPRO_RUNS:-1}"
    exit
fi

log "seed $seed (FUZZ_SEED=$seed scripts/fuzz.sh ${targets[*]} runs the same inputs from the same corpus)"

# Samples the resident memory (KiB) and mapping count of the fuzzing
# process of target $1 into $2 until the process ends.
sample_memory() {
    local t=$1 out=$2 start pid=""
    start=$(date +%s)
    printf 'seconds\trss_kib\tmappings\n' >"$out"
    while :; do
        [[ -n $pid && -d /proc/$pid ]] || pid=$(pgrep -n -f "fuzz/target/[a-z]*/[^ ]*/release/$t( |$)" || true)
        if [[ -n $pid && -r /proc/$pid/status ]]; then
            local rss maps
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            maps=$(wc -l <"/proc/$pid/maps" 2>/dev/null || true)
            [[ -n $rss && -n $maps ]] && printf '%s\t%s\t%s\n' "$(( $(date +%s) - start ))" "$rss" "$maps" >>"$out"
        fi
        sleep "$sample_every"
    done
}

run_target() {
    local t=$1 stats=fuzz/stats/$1.tsv sampler status=0
    mkdir -p "fuzz/corpus/$t" fuzz/stats "fuzz/artifacts/$t"
    sample_memory "$t" "$stats" &
    sampler=$!
    # shellcheck disable=SC2046 # fuzz_cmd's words are the command
    $(fuzz_cmd "$t") "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -seed="$seed" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 || status=$?
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    if [[ $(wc -l <"$stats") -gt 1 ]]; then
        log "$t: memory (seconds, RSS KiB, mappings) first $(sed -n 2p "$stats" | tr '\t' ' '), last $(tail -n 1 "$stats" | tr '\t' ' ') ($stats)"
    fi
    return "$status"
}

failed=()
for t in "${targets[@]}"; do
    log "$t: ${seconds}s"
    start=$(date +%s)
    marker=$(mktemp)
    if run_target "$t"; then
        log "$t: no crash in $(( $(date +%s) - start ))s"
    else
        log "$t: FAILED"
        find "fuzz/artifacts/$t" -type f -newer "$marker" | while read -r artifact; do
            log "$t: reproduce with: scripts/fuzz.sh --reproduce $t $artifact"
        done
        failed+=("$t")
    fi
    rm -f "$marker"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed: ${failed[*]} (seed $seed)"
    exit 1
fi
log "all targets clean (seed $seed)"
