#!/usr/bin/env bash
# Entry point of the generation service: `services/serve/run.sh [CONFIG] [livo serve options...]`.
# Default config: the toy world (services/serve/toy.yaml). Needs $LIVO_SERVE_TOKEN, --token-file or --insecure.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
config="${1:-services/serve/toy.yaml}"
[ $# -gt 0 ] && shift
exec .venv/bin/livo serve --config "$config" "$@"
