"""Optional parts of the package (``pip install 'livo[...]'``) and the check a command makes before
it starts: the light core is the data engine (``livo dedup``, ``livo shards``); every other stage
needs its extra, and a command run without it says which one to install instead of failing on an
import deep inside."""

from __future__ import annotations

from importlib.util import find_spec

from livo.errors import LivoError

# The modules each extra installs that its commands cannot start without (checked without importing).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "values": ("torch", "transformers", "sentence_transformers", "faiss", "onnxruntime"),
    "models": ("torch", "diffusers", "transformers", "PIL"),
    "train": ("torch", "diffusers", "transformers", "deepspeed", "peft"),
    "ray": ("ray", "psutil"),
    "dataset": ("torch", "diffusers", "transformers", "faiss", "ray", "psutil"),
    "eval": ("torch", "diffusers", "transformers", "faiss"),
    "serve": ("torch", "diffusers", "transformers", "faiss", "ray", "fastapi", "uvicorn"),
}


class MissingExtraError(LivoError, ImportError):
    """A command needs an optional part of the package that is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRA_MODULES[extra] if find_spec(name) is None]


def require_extra(*extras: str, command: str) -> None:
    """Raises :class:`MissingExtraError` naming the extras to install when any of ``extras`` lacks a
    module; ``command`` is what the user ran (``livo train``)."""
    lacking = {extra: missing for extra in extras if (missing := missing_modules(extra))}
    if lacking:
        names = sorted({module for modules in lacking.values() for module in modules})
        wanted = ",".join(lacking)
        raise MissingExtraError(
            f"{command} needs livo[{wanted}] ({', '.join(names)} not installed): pip install 'livo[{wanted}]'"
        )
