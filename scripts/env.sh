# Environment shared by the project's commands. Source it (from any folder): it puts the project's
# virtual environment first on PATH, so `livo`, `torchrun`, `ray` and `python` are the project's.
#   source scripts/env.sh
_livo_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
# uv, where scripts/setup.sh installs it on a machine that had none (after the venv on PATH).
if [ -d "$HOME/.cache/livo/uv/bin" ]; then
  case ":$PATH:" in
    *":$HOME/.cache/livo/uv/bin:"*) ;;
    *) export PATH="$HOME/.cache/livo/uv/bin:$PATH" ;;
  esac
fi
case ":$PATH:" in
  *":$_livo_root/.venv/bin:"*) ;;  # sourced twice: PATH already has it
  *) export PATH="$_livo_root/.venv/bin:$PATH" ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/livo/target}"
# Never wait on model hubs: everything the project needs is local.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$HOME/.cache/livo/torch_extensions}"
unset _livo_root
