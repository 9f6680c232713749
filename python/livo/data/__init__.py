"""Prompt data: reading prompt files, normalisation, exact and near-duplicate deduplication."""

from livo.data.dedup import DedupConfig, DedupResult, dedup, dedup_file, lsh_params, normalize
from livo.data.io import read_prompt_table, read_table, write_table

__all__ = [
    "DedupConfig",
    "DedupResult",
    "dedup",
    "dedup_file",
    "lsh_params",
    "normalize",
    "read_prompt_table",
    "read_table",
    "write_table",
]
