#!/usr/bin/env bash
# The release binary, built with profile-guided optimisation: an instrumented build serves
# bench/pgo-train.sh's workload, and the final build lays its code out by the counts that run
# gathered. The benchmark measures this binary and docker/Dockerfile ships it.
#
# Why: a request goes through a lot of code once each (hyper on both legs, tokio, our
# phases). With the counts, the compiler inlines along the paths requests take and lays them
# out together: with one token, 45,787 instructions a request became 34,674 (callgrind), user
# CPU a request fell from 10.5 to 7.2 µs and requests/s went from 0.86x to 0.96x of nginx's
# (6 interleaved rounds of wrk -c64). The workload decides what is hot: see
# bench/pgo-train.sh.
#
# Usage: bash bench/pgo.sh   (prints the binary's path; about twice a release build's time)
# Needs llvm-profdata from rustup's llvm-tools component, and nginx and wrk for the workload;
# each is installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/tools.sh
install_missing_tools nginx wrk >&2

profdata=$(llvm_profdata)

dir="$PWD/target/pgo"
rm -rf "$dir/data" "$dir/merged.profdata"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$dir/data" \
  cargo build --release --locked --bin cryptr-gateway --target-dir "$dir/instrumented" >&2
# The build scripts were instrumented too, and wrote their own counts while building.
rm -rf "$dir/data"
bash bench/pgo-train.sh "$dir/instrumented/release/cryptr-gateway" >&2
"$profdata" merge -o "$dir/merged.profdata" "$dir/data" >&2
# A profile of the CLI alone (say, gateways that never exited, so never wrote theirs) would lay
# out the serving path as cold, slower than no profile: it must have counted the requests.
served=$("$profdata" show --counts --function=pipeline6handle "$dir/merged.profdata" |
  sed -n 's/.*Block counts: \[\(.*\)\]/\1/p' | tr ', ' '\n\n' | sort -n | tail -1)
if [ "${served:-0}" -lt 10000 ]; then
  echo "pgo: the profile counted ${served:-no} requests served; expected the workload's" >&2
  exit 1
fi
echo "pgo: the profile counted $served requests served" >&2
# From scratch: cargo does not see a new profile as a change, and would keep every crate
# optimised for the last one. Functions the workload never reached are compiled as usual: no
# warning for each.
rm -rf "$dir/optimized"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$dir/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --locked --bin cryptr-gateway --target-dir "$dir/optimized" >&2
echo "$dir/optimized/release/cryptr-gateway"
