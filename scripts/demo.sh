#!/usr/bin/env bash
# Sets up the environment and runs the main job (`livo demo`: the whole pipeline on the toy world).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
mkdir -p outputs
uv run --locked --no-sync livo demo "$@"
