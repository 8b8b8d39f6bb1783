#!/usr/bin/env bash
# The workload a profile-guided build learns from (bench/pgo.sh runs it on the instrumented
# binary): the benchmark's scenarios, briefly, each checked for the answers it must get.
# Usage: bash bench/pgo-train.sh BINARY
# Needs nginx and wrk (bench/pgo.sh installs them from Debian's packages when missing).
#
# The traffic should look like production's: what it never runs, the build lays out as cold.
# So: nginx as the upstream (its answers carry `Connection: keep-alive`, `ETag`, ... as real
# servers' do) and as the JWKS endpoint (the keys are fetched as from Cryptr), and wrk's 64
# connections, each scenario for a few seconds.
set -euo pipefail
bin=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
work=$(mktemp -d)
pids=()
cleanup() {
  # SIGTERM, then wait: an instrumented binary writes its profile when it exits.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# nginx's workers run as an unprivileged user: they must be able to read the files.
chmod 755 "$work"
cd "$work"

source "$here/tools.sh"

# The upstream and the issuer's keys, both served by nginx.
up=$(free_port)
"$bin" keygen --out key.pem --jwks >jwks.json
mkdir -p www/api/v1 www/public www/t/train
course='{"id":1,"user_id":"eba25511-afce-4c8e-8cab-f82822434648","title":"learn git","tags":["colaborate","git","cli","commit","versionning"],"date":"5 Nov","timestamp":1604577600000,"teacher":{"name":"Max"}}'
echo "[$course]" >www/api/v1/courses
echo "[$course]" >www/public/courses
cp jwks.json www/t/train/.well-known
chmod -R a+rX www
serve_static "$work" "$up"

# Starts a gateway on config $1 (listening on port 0) and sets `addr` to the address it
# bound. (Not `$(start ...)`: the gateway would be a subshell's child, out of `pids`' reach.)
start() {
  # The default level: the access log's line a request is part of what a request runs.
  RUST_LOG=info "$bin" --log-format json run -c "$1" --workers 1 >"$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    addr=$(sed -n 's/.*"addr":"\([0-9.:]*\)".*"cryptr-gateway listening".*/\1/p; s/.*"cryptr-gateway listening".*"addr":"\([0-9.:]*\)".*/\1/p' "$1.log" | head -1)
    [ -z "$addr" ] || return 0
    sleep 0.1
  done
  echo "pgo-train: the gateway on $1 did not start:" >&2
  cat "$1.log" >&2
  exit 1
}
gateway_config() { # $1: token_cache on/off
  cat <<EOF
listen: 127.0.0.1:0
admin: { listen: "127.0.0.1:0" }
token_cache: $1
cors:
  allowed_origins: [ "http://localhost:8080" ]
  allowed_headers: [ Authorization ]
issuers:
  train:
    cryptr: { base_url: "http://127.0.0.1:$up", tenants: [train] }
    audiences: [ "http://localhost:8080" ]
    claims_to_headers: { sub: X-User-Id, email: X-User-Email }
routes:
  - name: public
    match: { prefix: /public }
    upstream: http://127.0.0.1:$up
    auth: none
  - name: courses
    match: { prefix: / }
    upstream: http://127.0.0.1:$up
    auth: { issuers: [train] }
EOF
}
gateway_config on >cached.yaml
gateway_config off >uncached.yaml
start cached.yaml
cached=$addr
start uncached.yaml
uncached=$addr

iss="http://127.0.0.1:$up/t/train"
mint() { "$bin" token --key key.pem --iss "$iss" --aud http://localhost:8080 --email max@example.com --scope openid,email "$@"; }
one=$(mint)
for i in $(seq 200); do mint --sub "user-$i"; done >tokens.txt
# The signature's last characters changed (to others than they were).
forged=${one%????}AAAA
[ "$forged" != "$one" ] || forged=${one%????}BBBB
cat >preflight.lua <<'EOF'
wrk.method = "OPTIONS"
wrk.headers["Origin"] = "http://localhost:8080"
wrk.headers["Access-Control-Request-Method"] = "GET"
wrk.headers["Access-Control-Request-Headers"] = "authorization"
EOF

# Runs wrk for $2 seconds on URL $3 (more wrk options after), and checks that every answer
# was 2xx ($1 = ok) or none was ($1 = refused).
load() {
  local want=$1 seconds=$2 url=$3 out total bad
  shift 3
  out=$(wrk -t2 -c64 -d"${seconds}s" "$@" "$url")
  total=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  bad=$(echo "$out" | sed -n 's/^ *Non-2xx or 3xx responses: \([0-9]*\)/\1/p')
  bad=${bad:-0}
  if [ "${total:-0}" -eq 0 ] || { [ "$want" = ok ] && [ "$bad" != 0 ]; } ||
    { [ "$want" = refused ] && [ "$bad" != "$total" ]; } || echo "$out" | grep -q "Socket errors"; then
    echo "pgo-train: $url, expected $want answers:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "pgo-train: $want $url $total requests"
}

api=/api/v1/courses
load ok 4 "http://$cached$api" -H "Authorization: Bearer $one"
TOKENS=tokens.txt load ok 3 "http://$cached$api" -s "$here/tokens.lua"
TOKENS=tokens.txt load ok 2 "http://$uncached$api" -s "$here/tokens.lua"
load ok 2 "http://$cached/public/courses"
load refused 1 "http://$cached$api" -H "Authorization: Bearer $forged"
load refused 1 "http://$cached$api" -H "Origin: http://localhost:8080"
load ok 1 "http://$cached$api" -s preflight.lua
