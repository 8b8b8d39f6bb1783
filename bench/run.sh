#!/usr/bin/env bash
# The benchmark: cryptr-gateway beside nginx (plain proxy, the reference), HAProxy (jwt_verify)
# and the tutorial's Flask server, all in front of one nginx upstream, on this machine.
# Not part of the tests. Usage: bash bench/run.sh [--rounds N] [--duration SECONDS] [--warmup SECONDS]
# Writes bench/RESULTS.md and bench/ratios.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/tools.sh
install_missing_tools nginx haproxy wrk openssl valgrind
# The tutorial's server and its dependencies (python-jose, as the tutorial uses), and PyJWT to
# mint 10,000 tokens quickly.
python3 -m pip install -q flask flask-cors gunicorn python-jose six pyjwt cryptography

# The binary the Docker image ships: a release build with profile-guided optimisation.
binary=$(bash bench/pgo.sh)
# The floor rows: hyper and Tokio with none of the gateway's work, built the same way.
floor=$(bash bench/floor.sh)
python3 bench/bench.py --binary "$binary" --floor "$floor" "$@"
