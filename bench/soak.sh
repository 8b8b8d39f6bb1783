#!/usr/bin/env bash
# The soak: one cryptr-gateway in front of nginx for N minutes (default 10) at a steady load of
# valid and invalid tokens, with the issuer's signing key rotated every minute and the config
# rewritten every 30 s. Not part of the tests or CI.
# Usage: bash bench/soak.sh [--minutes N] [--keep] (more options: python3 bench/soak.py --help)
# Writes bench/SOAK.md; exits non-zero when a criterion fails (see bench/SOAK.md).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in nginx wrk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=()
  for t in "${missing[@]}"; do
    case "$t" in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$t") ;; esac
  done
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
# PyJWT and cryptography mint the tokens and make the keys, as in bench/run.sh.
python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install -q pyjwt cryptography

cargo build --release --locked --bin cryptr-gateway
exec python3 bench/soak.py --binary target/release/cryptr-gateway "$@"
