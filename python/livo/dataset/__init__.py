"""Preference-dataset construction on Ray (``livo build-dataset``).

Stages, each a function with a typed config (``livo.dataset.config``): read prompt sources →
normalise + dedup (Rust) → value selection (FAISS selector) → rewrite (registry rules, or a
pluggable rewriter) → generate (violating, aligned) pairs on Ray actors with the frozen base model →
judge (``livo.judges``) → write shards + manifest. :func:`build_dataset` composes them; a rerun
resumes from what was written. See docs/dataset-construction.md.
"""

from livo.dataset.build_report import BuildReport
from livo.dataset.config import BuildConfig, builtin_config_path, load_build_config, parse_build_config
from livo.dataset.job import build_dataset
from livo.dataset.records import record_id, seed_of

__all__ = [
    "BuildConfig",
    "BuildReport",
    "build_dataset",
    "builtin_config_path",
    "load_build_config",
    "parse_build_config",
    "record_id",
    "seed_of",
]
