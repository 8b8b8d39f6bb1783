#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after another, and prints a table: target,
# executions, corpus size, crashes. Not part of CI. See fuzz/README.md.
#
#   fuzz/run.sh                     every target, FUZZ_SECONDS (120) each
#   fuzz/run.sh route cors          those targets only
#   fuzz/run.sh regressions         replays fuzz/regressions/<target>/* once; fails on a crash
#
# Environment:
#   FUZZ_SECONDS=120      time per target
#   FUZZ_SANITIZER=address  or `none` where AddressSanitizer does not work
#   FUZZ_FORK=1           libFuzzer's fork mode: a crash, timeout or OOM is saved under
#                         fuzz/artifacts/<target>/ and fuzzing goes on for the whole time;
#                         0: stop at the first crash, as `cargo fuzz run` does
#   FUZZ_TIMEOUT=30       seconds one input may take before it counts as a hang
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets it take the `-Z` flags cargo fuzz passes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ=$ROOT/fuzz
export RUSTC_BOOTSTRAP=1
SECONDS_EACH=${FUZZ_SECONDS:-120}
SANITIZER=${FUZZ_SANITIZER:-address}
FORK=${FUZZ_FORK:-1}
TIMEOUT=${FUZZ_TIMEOUT:-30}
ALL=(auth_token parse_jwks config route cors pipeline)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz
fi

echo "building the fuzz targets (sanitizer: $SANITIZER)" >&2
cargo fuzz build -s "$SANITIZER"

BIN=$FUZZ/target/x86_64-unknown-linux-gnu/release

if [[ "${1:-}" == "regressions" ]]; then
    failed=0
    for t in "${ALL[@]}"; do
        dir=$FUZZ/regressions/$t
        [[ -d $dir ]] && [[ -n "$(ls -A "$dir")" ]] || continue
        for input in "$dir"/*; do
            if "$BIN/$t" -runs=1 "$input" >/dev/null 2>&1; then
                printf 'ok     %-12s %s\n' "$t" "${input#"$ROOT"/}"
            else
                printf 'CRASH  %-12s %s\n' "$t" "${input#"$ROOT"/}"
                failed=1
            fi
        done
    done
    exit $failed
fi

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL[@]}")
LOGS=$FUZZ/target/logs
mkdir -p "$LOGS"

count_files() { # dir glob
    find "$1" -maxdepth 1 -type f -name "$2" 2>/dev/null | wc -l
}

rows=()
for t in "${targets[@]}"; do
    corpus=$FUZZ/corpus/$t
    artifacts=$FUZZ/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    cp -n "$FUZZ/seeds/$t/"* "$corpus/" 2>/dev/null || true
    crashes_before=$(count_files "$artifacts" 'crash-*')
    hangs_before=$(( $(count_files "$artifacts" 'timeout-*') + $(count_files "$artifacts" 'oom-*') ))
    log=$LOGS/$t.log
    flags=(-max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" -print_final_stats=1)
    if [[ $FORK == 1 ]]; then
        flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    fi
    echo "fuzzing $t for ${SECONDS_EACH}s (log: ${log#"$ROOT"/})" >&2
    set +e
    cargo fuzz run -s "$SANITIZER" "$t" "$corpus" -- "${flags[@]}" >"$log" 2>&1
    status=$?
    set -e
    # Executions: fork mode's last `#N: cov: ...` line (the total over its jobs), else the
    # final `stat::number_of_executed_units`, else the `#N DONE` line.
    execs=
    if [[ $FORK == 1 ]]; then
        execs=$(grep -oE '^#[0-9]+: cov:' "$log" | grep -oE '[0-9]+' | tail -1 || true)
    else
        execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
        [[ -n $execs ]] || execs=$(grep -oE '^#[0-9]+[[:space:]]+DONE' "$log" | grep -oE '[0-9]+' | tail -1 || true)
    fi
    [[ -n $execs ]] || execs='?'
    size=$(count_files "$corpus" '*')
    crashes=$(( $(count_files "$artifacts" 'crash-*') - crashes_before ))
    hangs=$(( $(count_files "$artifacts" 'timeout-*') + $(count_files "$artifacts" 'oom-*') - hangs_before ))
    if [[ $FORK != 1 && $status != 0 && $crashes == 0 ]]; then
        crashes='?'
    fi
    rows+=("$t|$execs|$size|$crashes|$hangs|$status")
done

printf '\n%-12s %12s %8s %8s %14s %5s\n' target executions corpus crashes timeouts/ooms exit
for row in "${rows[@]}"; do
    IFS='|' read -r t execs size crashes hangs status <<<"$row"
    printf '%-12s %12s %8s %8s %14s %5s\n' "$t" "$execs" "$size" "$crashes" "$hangs" "$status"
done
echo
echo "new crash inputs, if any, are under fuzz/artifacts/<target>/; see fuzz/README.md" >&2
