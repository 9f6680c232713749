#!/usr/bin/env bash
# Sets up the environment and runs every test: Rust (fmt, clippy, unit + property tests), Python
# (ruff, mypy) and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test -p livo-data --quiet

# The native module's hand-written stubs must match the built extension.
uv run --locked --no-sync python -m mypy.stubtest livo._native

# Python checks, as Rust's: lint, formatting, types (strict on the data engine, models, losses and
# value selection; pyproject.toml).
uv run --locked --no-sync ruff check python tests benchmarks services
uv run --locked --no-sync ruff format --check python tests benchmarks services
uv run --locked --no-sync mypy

set +e
# The slowest tests are listed at the end: the suite has a time budget (~15 min on 2 cores).
uv run --locked --no-sync pytest --durations=25 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
