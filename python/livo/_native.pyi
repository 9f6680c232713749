# Type stubs of the private Rust module ``livo._native`` (crates/livo-py). Checked in CI with
# ``mypy.stubtest livo._native``.
from os import PathLike
from typing import Any, final

__version__: str
__all__ = [
    "__version__",
    "DEDUP_ALL_PAIRS_BUCKET",
    "DatasetLockedError",
    "InvalidParameterError",
    "InvalidUtf8Error",
    "KeywordMatcher",
    "ManifestError",
    "ParquetFileError",
    "SchemaMismatchError",
    "ShardWriter",
    "dedup",
    "dedup_block_features",
    "dedup_components",
    "dedup_verify_pairs",
    "lsh_params",
    "normalize",
    "normalize_robust",
    "read_text_lines",
    "verify_shards",
    "_write_single_file",
]

# The engine's exceptions are the classes of livo.errors (subclasses of LivoError), exported here too.
from livo.errors import DatasetLockedError as DatasetLockedError
from livo.errors import InvalidParameterError as InvalidParameterError
from livo.errors import InvalidUtf8Error as InvalidUtf8Error
from livo.errors import ManifestError as ManifestError
from livo.errors import ParquetFileError as ParquetFileError
from livo.errors import SchemaMismatchError as SchemaMismatchError

DEDUP_ALL_PAIRS_BUCKET: int

def dedup(
    texts: list[str] | Any,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    bands: int | None = None,
    verify: bool = True,
    seed: int = 1,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]: ...
def dedup_components(a: Any, b: Any) -> tuple[Any, Any]: ...
def read_text_lines(path: str | PathLike[str]) -> list[str]: ...
def normalize(text: str) -> str: ...
def lsh_params(threshold: float, num_perm: int, verify: bool = True) -> tuple[int, int]: ...
def dedup_block_features(
    texts: Any,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    bands: int | None = None,
    verify: bool = True,
    seed: int = 1,
    threads: int | None = None,
) -> dict[str, Any]: ...
def dedup_verify_pairs(
    left: Any, right: Any, *, ngram: int = 5, threshold: float = 0.8, threads: int | None = None
) -> Any: ...
def normalize_robust(texts: list[str]) -> list[str]: ...

@final
class KeywordMatcher:
    def __new__(
        cls,
        groups: list[list[str]],
        exceptions: list[list[str]],
        protected: list[str],
        fuzzy_min_len: int = 5,
        fuzzy2_min_len: int = 8,
    ) -> KeywordMatcher: ...
    def match_batch(self, texts: list[str]) -> list[list[tuple[int, str, str, int]]]: ...
    @property
    def group_count(self) -> int: ...

@final
class ShardWriter:
    def __new__(
        cls,
        dir: str | PathLike[str],
        *,
        splits: list[tuple[str, float]],
        group_key: str,
        record_id: str,
        buckets: int,
        target_shard_bytes: int,
        row_group_bytes: int,
        zstd_level: int,
        schema_version: str,
        metadata_json: str,
    ) -> ShardWriter: ...
    def write(self, data: Any) -> tuple[int, int, int]: ...
    def contains(self, record_ids: list[str]) -> list[bool]: ...
    def finish(self) -> str: ...
    def abort(self) -> None: ...
    @property
    def closed(self) -> bool: ...

def verify_shards(dir: str | PathLike[str], *, progress: bool = False) -> dict[str, Any]: ...
def _write_single_file(path: str | PathLike[str], data: Any, *, zstd_level: int, row_group_bytes: int) -> Any: ...
