#!/usr/bin/env bash
# Sets up the project environment in .venv/ from the lock file (uv.lock), building the Rust
# extension. Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
# uv is installed, when missing, into a virtual environment of its own: a system Python may refuse
# pip installs (PEP 668, as Debian's and Ubuntu's do), and a user install may land off PATH.
# scripts/env.sh puts the same folder on PATH.
UV_HOME="$HOME/.cache/livo/uv"
export PATH="$UV_HOME/bin:$PATH"
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "setup: installing uv $UV_VERSION into $UV_HOME" >&2
  python3 -m venv --clear "$UV_HOME" || {
    echo "setup: python3 -m venv failed; install the venv module (Debian, Ubuntu: apt-get install python3-venv) or uv $UV_VERSION, then run this again" >&2
    exit 1
  }
  "$UV_HOME/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: a Rust toolchain (cargo) is required: https://rustup.rs" >&2; exit 1; }

# Cargo's build cache outlives fresh clones on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livo/target}"
# Byte-compile at install time: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every process
# would otherwise recompile torch/transformers/diffusers from source, ~14 s per import. Costs about
# a minute once per fresh environment; later runs only check timestamps (~2 s).
uv sync --locked --all-extras --all-groups --compile-bytecode

# Headless Chromium + chromedriver for the web-page test in tests/test_serve.py.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >/dev/null \
      || { apt-get update -qq >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "setup: apt-get could not install chromium/chromium-driver; the web-page test will fail" >&2
  else
    echo "setup: skipping chromium/chromium-driver (not root or no apt-get); install them for the web-page test" >&2
  fi
fi
