#!/usr/bin/env bash
# Sets up the environment and runs the main job on the embedded default data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
mkdir -p outputs
uv run --locked --no-sync livo dedup python/livo/data/samples/prompts.txt -o outputs/prompts.dedup.parquet "$@"
