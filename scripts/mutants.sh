#!/usr/bin/env bash
# The mutation suite: proves the harness catches real driver bugs.
#
#   scripts/mutants.sh            every mutant in tests/mutants/
#   scripts/mutants.sh --fast     the ones tagged "fast" (what CI runs)
#   scripts/mutants.sh NAME...    these (a name, its number: 07, or the
#                                 path of a .patch file anywhere)
#   scripts/mutants.sh --list     the mutants and their tags
#   scripts/mutants.sh --control  the controls in tests/mutants/control/:
#                                 harmless changes that must be MISSED
#                                 (proof that a CAUGHT is earned)
#
# Each tests/mutants/NN-name.patch plants one realistic bug in the driver
# source. For each, this script copies the working tree (tracked and
# untracked files, not target/) to a temporary folder, applies the patch,
# builds the real portwatch.sys for the kernel target (one shared target
# folder, target/mutants, so a rebuild compiles only the driver's crates)
# and runs the scenario set against it under the harness with special pool
# on (portwatch-check: ioctl-storm, datapath, races, lifecycle, events; it stops
# at the first finding). It prints one line per mutant:
#
#   CAUGHT <name>: <rule> — <message> [<scenario>]
#   MISSED <name>[: why]     (clean run, or the harness died or hung
#                             without naming a rule)
#   BROKEN <name>: <why>     (the patch does not apply or does not build)
#
# then `mutants: N caught, M missed, K broken`, and exits non-zero unless
# every mutant was caught (with --control: unless every control was
# missed and none broken). Environment: MUTANT_OPS (operations per
# scenario, default 20000), MUTANT_TIMEOUT (seconds per run, default 180),
# MUTANT_BUILD_TIMEOUT (seconds per build, default 600).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
triple=x86_64-pc-windows-msvc
mutants_dir="$root/tests/mutants"
target_dir="$root/target/mutants"
ops=${MUTANT_OPS:-20000}
run_timeout=${MUTANT_TIMEOUT:-180}
build_timeout=${MUTANT_BUILD_TIMEOUT:-600}

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

tags_of() { sed -n '/^Tags:/{s/^Tags:[[:space:]]*//p;q}' "$1"; }

fast=false
list=false
control=false
wanted=()
for arg in "$@"; do
    case $arg in
        --fast) fast=true ;;
        --list) list=true ;;
        --control) control=true ;;
        -h | --help) usage 0 ;;
        -*) usage ;;
        *) wanted+=("$arg") ;;
    esac
done

$control && mutants_dir="$mutants_dir/control"
patches=()
others=()
for w in "${wanted[@]}"; do
    if [[ $w == *.patch && -f $w ]]; then
        patches+=("$(cd "$(dirname "$w")" && pwd)/$(basename "$w")")
    else
        others+=("$w")
    fi
done
only_paths=false
[[ ${#patches[@]} -gt 0 && ${#others[@]} -eq 0 ]] && only_paths=true
wanted=("${others[@]}")
for p in "$mutants_dir"/*.patch; do
    $only_paths && break
    name=$(basename "$p" .patch)
    if [[ ${#wanted[@]} -gt 0 ]]; then
        hit=false
        for w in "${wanted[@]}"; do
            [[ $name == "$w" || $name == "$w"-* ]] && hit=true
        done
        $hit || continue
    elif $fast && [[ " $(tags_of "$p") " != *" fast "* ]]; then
        continue
    fi
    patches+=("$p")
done
if [[ ${#patches[@]} -eq 0 ]]; then
    echo "mutants.sh: no mutant matches: ${wanted[*]:-(--fast)}" >&2
    exit 2
fi
if $list; then
    for p in "${patches[@]}"; do
        printf '%-42s %s\n' "$(basename "$p" .patch)" "$(tags_of "$p")"
    done
    exit 0
fi

rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"

echo "mutants.sh: building the runner (portwatch-check)" >&2
cargo build --quiet --release -p portwatch-scenarios --bin portwatch-check
check="$root/target/release/portwatch-check"

work=$(mktemp -d "${TMPDIR:-/tmp}/portwatch-mutants.XXXXXX")
trap 'rm -rf "$work"' EXIT
# One fixed path for every mutant's tree, so the shared target folder's
# artifacts of the registry crates stay valid from one mutant to the next.
tree="$work/tree"

# A fresh copy of the working tree. Files get the copy's time (tar -m): a
# file restored to its original text must still look newer than the
# previous mutant's build of it.
copy_tree() {
    rm -rf "$tree"
    mkdir -p "$tree"
    git ls-files -z --cached --others --exclude-standard |
        tar --null -T - -cf - | tar -xmf - -C "$tree"
}

caught=0
missed=0
broken=0
started=$SECONDS
# Every mutant must still apply to today's driver, whichever ones run: a
# patch that no longer applies would test nothing the next time it runs.
if ! $control; then
    for p in "$root/tests/mutants"/*.patch; do
        [[ " ${patches[*]} " == *" $p "* ]] && continue
        if ! err=$(git -C "$root" apply --check "$p" 2>&1); then
            echo "BROKEN $(basename "$p" .patch): patch does not apply: $(head -n 1 <<<"$err")"
            broken=$(( broken + 1 ))
        fi
    done
fi
for p in "${patches[@]}"; do
    name=$(basename "$p" .patch)
    t0=$SECONDS
    copy_tree
    if ! err=$(cd "$tree" && git apply "$p" 2>&1); then
        echo "BROKEN $name: patch does not apply: $(head -n 1 <<<"$err")"
        broken=$((broken + 1))
        continue
    fi
    log="$work/$name.build.log"
    if ! (cd "$tree" && timeout "$build_timeout" cargo build --quiet -p portwatch --target "$triple" \
        --profile driver --target-dir "$target_dir") >"$log" 2>&1; then
        why=$(grep -m 1 -E '^error' "$log" || tail -n 1 "$log")
        echo "BROKEN $name: does not build: $why"
        broken=$((broken + 1))
        continue
    fi
    sys="$work/$name.sys"
    cp "$target_dir/$triple/driver/portwatch.dll" "$sys"
    out="$work/$name.out"
    rc=0
    PORTWATCH_DRIVER="$sys" timeout -k 5 "$run_timeout" "$check" --ops "$ops" >"$out" 2>"$work/$name.err" || rc=$?
    found=$(sed -n '/^FOUND /{s///p;q}' "$out")
    secs=$((SECONDS - t0))
    if [[ -n $found ]]; then
        echo "CAUGHT $name: $found"
        caught=$((caught + 1))
    elif grep -qx CLEAN "$out"; then
        echo "MISSED $name"
        missed=$((missed + 1))
    else
        case $rc in
            124 | 137) why="the run hung past ${run_timeout} s" ;;
            *) why="the harness process died (exit $rc): $(tail -n 1 "$work/$name.err")" ;;
        esac
        echo "MISSED $name: $why, without naming a rule"
        missed=$((missed + 1))
    fi
    echo "mutants.sh: $name took ${secs} s" >&2
done
echo "mutants: $caught caught, $missed missed, $broken broken ($((SECONDS - started)) s)"
if $control; then
    # A control is a harmless change: the suite must find nothing in it.
    [[ $caught -eq 0 && $broken -eq 0 ]]
else
    [[ $missed -eq 0 && $broken -eq 0 ]]
fi
