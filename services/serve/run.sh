#!/usr/bin/env bash
# Entry point of the generation service: `services/serve/run.sh [CONFIG] [livo serve options...]`.
# Default config: the toy world (services/serve/toy.yaml). Needs $LIVO_SERVE_TOKEN, --token-file or --insecure.
# CONFIG, when given, is the first argument not starting with "-"; paths are the caller's.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
config="$root/services/serve/toy.yaml"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  config="$(realpath "$1")"
  shift
fi
source "$root/scripts/env.sh"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$root/.venv/bin/livo" serve --config "$config" "$@"
