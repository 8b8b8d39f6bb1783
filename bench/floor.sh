#!/usr/bin/env bash
# The benchmark's floor (bench/floor: hyper and Tokio passing requests through, nothing
# else), built as bench/pgo.sh builds the gateway, so that the two are compared as equals: an
# instrumented build proxies wrk's requests to nginx for a few seconds in each of its modes,
# and the final build is laid out by those counts.
# Usage: bash bench/floor.sh   (prints the binary's path)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/tools.sh
install_missing_tools nginx wrk curl openssl >&2
profdata=$(llvm_profdata)

dir="$PWD/target/floor"
manifest=bench/floor/Cargo.toml
rm -rf "$dir/data" "$dir/merged.profdata"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$dir/data" \
  cargo build --release --locked --manifest-path "$manifest" --target-dir "$dir/instrumented" >&2
rm -rf "$dir/data"

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# nginx's workers run as an unprivileged user: they must be able to read the files.
chmod 755 "$work"
mkdir -p "$work/www/public"
echo '[{"id":1,"title":"learn git","teacher":{"name":"Max"}}]' >"$work/www/public/courses"
chmod -R a+rX "$work/www"
up=$(free_port)
serve_static "$work" "$up"

# The `--rsa` mode's key, and a token it signed (the floor reads only the signature).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
openssl pkey -in "$work/key.pem" -pubout -out "$work/key.pub.pem"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
signed="$(printf '{"alg":"RS256"}' | b64url).$(printf '{"sub":"floor"}' | b64url)"
token="$signed.$(printf '%s' "$signed" | openssl dgst -sha256 -sign "$work/key.pem" -binary | b64url)"

for mode in plain headers rsa; do
  case "$mode" in
    plain) flags=() auth=() ;;
    headers) flags=(--headers) auth=() ;;
    rsa) flags=(--headers --rsa "$work/key.pub.pem") auth=(-H "Authorization: Bearer $token") ;;
  esac
  port=$(free_port)
  "$dir/instrumented/release/floor-proxy" "${flags[@]}" "127.0.0.1:$port" "127.0.0.1:$up" &
  pid=$!
  for _ in $(seq 50); do
    curl -sf -o /dev/null "${auth[@]}" "http://127.0.0.1:$port/public/courses" && break
    sleep 0.1
  done
  answered=$(wrk -t2 -c64 -d3s "${auth[@]}" "http://127.0.0.1:$port/public/courses" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  if [ "${answered:-0}" -lt 1000 ]; then
    echo "floor: the instrumented proxy ($mode) answered ${answered:-no} requests" >&2
    exit 1
  fi
  # SIGTERM ends it normally: the counts are written at exit.
  kill -TERM "$pid"
  wait "$pid"
  pid=
done

"$profdata" merge -o "$dir/merged.profdata" "$dir/data" >&2
# From scratch: cargo does not see a new profile as a change.
rm -rf "$dir/optimized"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$dir/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --locked --manifest-path "$manifest" --target-dir "$dir/optimized" >&2
echo "$dir/optimized/release/floor-proxy"
