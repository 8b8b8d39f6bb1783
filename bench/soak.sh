#!/usr/bin/env bash
# The soak: one cryptr-gateway in front of nginx for N minutes (default 10) at a steady load of
# valid and invalid tokens, with the issuer's signing key rotated every minute and the config
# rewritten every 30 s. Not part of the tests or CI.
# Usage: bash bench/soak.sh [--minutes N] [--keep] (more options: python3 bench/soak.py --help)
# Writes bench/SOAK.md; exits non-zero when a criterion fails (see bench/SOAK.md).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/tools.sh
install_missing_tools nginx wrk
# PyJWT and cryptography mint the tokens and make the keys, as in bench/run.sh.
python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install -q pyjwt cryptography

cargo build --release --locked --bin cryptr-gateway
exec python3 bench/soak.py --binary target/release/cryptr-gateway "$@"
