"""Deduplication of corpora larger than one machine, on Ray Data.

The single-process engine (:func:`livo.data.dedup.dedup`) holds every row's normal form and
signature at once, about 1 GB per million prompts. Here the same method runs as stages whose
memory is bounded by a block, not by the corpus:

1. **read and featurise**: each piece of the corpus (:mod:`livo.data.corpus`) is read by one task,
   and the Rust engine computes every row's normal-form hash and LSH band hashes;
2. **exact duplicates**: a shuffle by normal-form hash; each row joins the first row of its hash;
3. **candidate pairs**: the first rows, one record per band, shuffled by band hash; within a bucket
   every row is paired with the bucket's first row and (when verifying) its predecessor;
4. **verification**: the pairs are joined with their texts and kept when the exact Jaccard
   similarity of their n-gram sets reaches the threshold;
5. **clusters**: connected components of the kept pairs by alternating large-star and small-star
   rounds (Kiveris et al., 2014), each a shuffle, until neither changes the graph; every component
   ends as a star around its smallest row;
6. **write**: each piece is read again and written with ``cluster_id`` and ``keep`` as one Parquet
   part of the output folder.

The pairs (after step 4), the clusters (step 5) and each part are kept in a work folder beside the
output (:mod:`livo.data.stage_checkpoints`) until the output is complete, so rerunning a job whose
driver was lost resumes after the last of them.

Every step repeats the single-process computation on the same inputs in the same order, so the
result equals :func:`~livo.data.dedup.dedup`'s, cluster ids included, whatever the number of
pieces, partitions or nodes. Tasks are pure functions of their inputs, so a task lost with its
worker is re-run by Ray and the result does not change.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from livo import _native
from livo.data.corpus import (
    Piece,
    conform,
    expand_inputs,
    merged_schema,
    read_piece,
    split_pieces,
    survey_piece,
    with_file_schemas,
    with_offsets,
)
from livo.data.dedup import DedupConfig
from livo.data.io import write_table
from livo.data.stage_checkpoints import StageCheckpoints, file_fingerprint, work_folder
from livo.errors import InputError, InvalidParameterError

if TYPE_CHECKING:
    import ray.data

# Rows per shuffle partition when the number of partitions is not given: a partition of the
# exact-duplicate stage then holds about 100 MB (text, hashes and 16 band hashes a row).
ROWS_PER_PARTITION = 500_000
# Task retries when a worker is lost; every task is a pure function of its inputs.
TASK_RETRIES = 3
# The columns the output adds; an input's own columns of these names are replaced.
LABEL_COLUMNS = ("cluster_id", "keep")
# What the checkpointed stages hold: exact duplicates (row → its text's first row), verified pairs
# and cluster stars (a < b).
EXACT_LINKS = pa.schema([("row", pa.int64()), ("first", pa.int64())])
PAIRS = pa.schema([("a", pa.int64()), ("b", pa.int64())])
# Bumped when a checkpointed stage changes meaning, so an older work folder is not read as this one.
CHECKPOINT_VERSION = 1

# Buckets up to this size propose every pair of their members (see the engine's candidate pairs).
ALL_PAIRS_BUCKET: int = _native.DEDUP_ALL_PAIRS_BUCKET


@dataclass(frozen=True)
class RayDedupOptions:
    """How the work is cut. None of these changes the result.

    ``piece_bytes``: input bytes per read task (a piece). ``partitions``: blocks per shuffle (default:
    one per ``ROWS_PER_PARTITION`` rows, at least one per CPU of the cluster). ``task_memory``: bytes
    of Ray's ``memory`` resource each task reserves, so Ray never packs more tasks on a node than its
    memory holds. ``task_threads``: engine threads per task. ``local_component_edges``: up to this many
    verified pairs, clusters are found in one task (16 bytes a pair) instead of shuffled rounds, which
    cost a few seconds each whatever their size."""

    piece_bytes: int = 64 << 20
    partitions: int | None = None
    task_memory: int | None = None
    task_threads: int = 1
    local_component_edges: int = 4_000_000


@dataclass
class RayDedupResult:
    """Counts of a distributed run (the per-row result is in the output folder)."""

    rows: int
    exact_duplicates: int
    near_duplicates: int
    clusters: int
    empty: int
    first_empty_rows: list[int]
    candidate_pairs: int
    verified_pairs: int
    bands: int
    rows_per_band: int
    pieces: int
    partitions: int
    component_rounds: int
    seconds: float
    # Arrow bytes entering the keyed shuffles (exact, buckets, pairs, the two text joins): what the
    # network carries between nodes at most.
    shuffle_bytes: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    # Stages an interrupted run of the same job had finished, read back instead of computed:
    # "pairs", "components", "parts N/M".
    resumed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The run's counts, without the list of part files."""
        return {k: v for k, v in asdict(self).items() if k != "parts"}


def dedup_ray(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    column: str | None = None,
    config: DedupConfig | None = None,
    options: RayDedupOptions | None = None,
    overwrite: bool = False,
    keep_only: bool = False,
) -> RayDedupResult:
    """Deduplicates a corpus on the running Ray cluster (``ray.init`` first) and writes every input
    row plus ``cluster_id`` and ``keep`` to ``output_dir`` as Parquet parts (``part-00000.parquet``,
    ``part-00001.parquet``, ...) in corpus order (only the kept rows with ``keep_only``). ``inputs`` are files, folders or glob
    patterns (:func:`livo.data.corpus.expand_inputs`); their rows form one corpus in the order given.

    The output folder must be on storage every node can write (the same path everywhere). It appears
    complete or not at all: parts are written in a hidden sibling work folder, renamed at the end.
    Rerunning a job whose driver was lost (the same inputs, unchanged, and settings) resumes after
    the stages that work folder holds.
    """
    try:
        with _failures_reported_once():
            return _run(
                inputs, output_dir, column, config or DedupConfig(), options or RayDedupOptions(), overwrite, keep_only
            )
    except Exception as error:
        cause = _input_error_in(error)
        if cause is None:
            raise
        cause.args = (_RETRY_ADVICE.sub("", str(cause)),)
        if cause is error:
            raise
        raise InputError(str(cause)) from None


@contextmanager
def _failures_reported_once() -> Iterator[None]:
    """Ray Data logs a failed task's traceback to the console, twice, before it raises the task's
    error, and the error is what a caller gets: one line naming the file and rows for a mistake in
    the input, the whole traceback otherwise. So the console copies (errors of ``ray.data``'s
    loggers) are held back while the job runs; Ray Data's log file keeps them."""
    consoles = [
        handler
        for handler in logging.getLogger("ray.data").handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    for handler in consoles:
        handler.addFilter(_below_error)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(_below_error)


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def _input_error_in(error: BaseException) -> InputError | None:
    """The input error a task raised, out of the wrappers Ray and Ray Data put around it, so the user
    reads the file and rows at fault rather than a remote traceback."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if type(current) is InputError:
            return current
        if isinstance(cause, InputError):
            return cause if type(cause) is InputError else InputError(str(cause.args[0]) if cause.args else "")
        current = current.__cause__ or current.__context__ or (cause if isinstance(cause, BaseException) else None)
    return None


def _run(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    column: str | None,
    config: DedupConfig,
    options: RayDedupOptions,
    overwrite: bool,
    keep_only: bool,
) -> RayDedupResult:
    import ray
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    lsh_bands, rows_per_band = _native.lsh_params(config.threshold, config.num_perm, config.verify)
    if config.bands is not None:
        # Checked here as the single-process engine checks them: a featurise task would fail later,
        # after Ray started and the corpus was surveyed.
        if not 1 <= config.bands <= config.num_perm:
            raise InvalidParameterError(
                f"invalid parameter bands={config.bands}: must be between 1 and num_perm ({config.num_perm})"
            )
        if config.num_perm % config.bands:
            raise InvalidParameterError(
                f"invalid parameter num_perm={config.num_perm}: is not a multiple of the number of bands "
                f"({config.bands})"
            )
        lsh_bands, rows_per_band = config.bands, config.num_perm // config.bands
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise InputError(f"{output_dir}: already exists; pass overwrite=True (--overwrite) to replace it")
    if not ray.is_initialized():
        raise RuntimeError("dedup_ray needs a running Ray: call ray.init() (or livo.runtime.start_ray) first")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    remote = _remote_args(options)
    task_options = {"max_retries": TASK_RETRIES, **remote}
    files = expand_inputs(inputs)
    fingerprint = job_fingerprint(files, column, config, options, keep_only)
    work = StageCheckpoints(work_folder(output_dir), fingerprint, discard_other=overwrite)
    resumed: list[str] = []

    context = DataContext.get_current()
    # Shuffle aggregators are actors that would each hold half a CPU for the whole stage: on nodes of
    # one CPU, two of them leave no node a whole CPU for the tasks that feed them, and the run waits
    # for ever. They take no CPU here; they work only between the tasks. (Joins reduce in tasks.)
    settings_names = (
        "shuffle_strategy",
        "enable_progress_bars",
        "max_hash_shuffle_aggregators",
        "hash_shuffle_operator_actor_num_cpus_override",
    )
    saved = {name: getattr(context, name) for name in settings_names}
    context.shuffle_strategy = ShuffleStrategy.HASH_SHUFFLE
    context.enable_progress_bars = False
    context.hash_shuffle_operator_actor_num_cpus_override = 0
    try:
        clock = time.perf_counter()
        pieces = split_pieces(files, options.piece_bytes)
        survey = ray.remote(survey_piece).options(max_retries=TASK_RETRIES, **remote)
        counts, schemas = zip(*ray.get([survey.remote(piece) for piece in pieces])) if pieces else ((), ())
        pieces = with_file_schemas(with_offsets(pieces, counts), schemas)
        # Where the files' columns differ, every part gets all of them, so the parts read as one table
        # (a .jsonl piece is read with its file's types); otherwise the parts keep the files' own.
        read_as = [piece.schema if piece.format == "jsonl" else schema for piece, schema in zip(pieces, schemas)]
        distinct = list(dict.fromkeys(s for s in map(_without_labels, read_as) if s is not None))
        columns = merged_schema(distinct, "the input files") if len(distinct) > 1 else None
        total_rows = sum(piece.rows for piece in pieces)
        partitions = options.partitions or max(_cluster_cpus(), math.ceil(total_rows / ROWS_PER_PARTITION))
        stage_seconds["count"] = time.perf_counter() - clock
        # One aggregator per partition: an aggregator holds its partitions until they are complete, so
        # fewer aggregators than partitions would each hold a larger share of the corpus.
        context.max_hash_shuffle_aggregators = partitions

        pairs = work.facts("pairs")
        if pairs is None:
            pairs = _pairs_stage(pieces, column, config, options, partitions, lsh_bands, remote, stage_seconds)
            saved_pairs = {"exact_links": pairs.pop("exact_links"), "edges": pairs.pop("edges")}
            work.save("pairs", saved_pairs, pairs, task_options)
        else:
            resumed.append("pairs")
        exact_links = work.load("pairs", "exact_links", EXACT_LINKS, task_options)
        edges = work.load("pairs", "edges", PAIRS, task_options)
        verified_pairs = pairs["verified_pairs"]

        clock = time.perf_counter()
        components = work.facts("components")
        if components is None:
            if not verified_pairs:
                stars, rounds = None, 0
            elif verified_pairs <= options.local_component_edges:
                gather = ray.remote(_components_in_one_task).options(max_retries=TASK_RETRIES, **remote)
                stars, rounds = ray.data.from_arrow_refs([gather.remote(*edges.to_arrow_refs())]), 0
            else:
                stars, rounds = _connected_components(edges, partitions, remote)
            components = {"rounds": rounds, "stars": stars is not None}
            work.save("components", {} if stars is None else {"stars": stars}, components, task_options)
        else:
            resumed.append("components")
        stars = work.load("components", "stars", PAIRS, task_options) if components["stars"] else None
        rounds = components["rounds"]
        stage_seconds["components"] = time.perf_counter() - clock

        clock = time.perf_counter()
        parts = work.parts()
        done = {i: parts / _part_name(i) for i in range(len(pieces)) if (parts / _part_name(i)).exists()}
        written: list[dict[str, Any]] = [
            {"piece": i, "file": path.name, "clusters": _clusters_in(path, keep_only)} for i, path in done.items()
        ]
        if done:
            resumed.append(f"parts {len(done)}/{len(pieces)}")
        if len(done) < len(pieces):
            labels = _row_labels(exact_links, stars, partitions, remote)
            starts = np.array([piece.first_row for piece in pieces], dtype=np.int64)
            to_write = [i for i in range(len(pieces)) if i not in done]
            every_piece = ray.data.from_items(
                [{"row": -1, "cluster": -1, "piece": i} for i in to_write], override_num_blocks=1
            )
            written += (
                labels.map_batches(
                    _with_piece, batch_format="pyarrow", fn_kwargs={"starts": starts, "skip": sorted(done)}, **remote
                )
                .union(every_piece)
                .groupby("piece", num_partitions=min(partitions, max(1, len(to_write))))
                .map_groups(
                    _write_piece,
                    batch_format="pyarrow",
                    fn_kwargs={
                        "pieces": pieces,
                        "column": column,
                        "columns": columns,
                        "folder": str(parts),
                        "keep_only": keep_only,
                    },
                    **remote,
                )
                .take_all()
            )
        if len(written) != len(pieces):
            raise RuntimeError(f"{len(written)} of {len(pieces)} pieces were written")
        work.publish(output_dir)
        written.sort(key=lambda r: int(r["piece"]))
        stage_seconds["write"] = time.perf_counter() - clock
    except BaseException:
        work.discard_if_nothing_finished()
        raise
    finally:
        for name, value in saved.items():
            setattr(context, name, value)

    clusters = sum(int(r["clusters"]) for r in written)
    return RayDedupResult(
        rows=total_rows,
        exact_duplicates=pairs["exact_duplicates"],
        near_duplicates=total_rows - clusters - pairs["exact_duplicates"],
        clusters=clusters,
        empty=pairs["empty"],
        first_empty_rows=pairs["first_empty"],
        candidate_pairs=pairs["candidate_pairs"],
        verified_pairs=verified_pairs,
        bands=lsh_bands,
        rows_per_band=rows_per_band,
        pieces=len(pieces),
        partitions=partitions,
        component_rounds=rounds,
        shuffle_bytes=pairs["shuffle_bytes"],
        seconds=time.perf_counter() - started,
        stage_seconds=stage_seconds,
        parts=[str(output_dir / str(r["file"])) for r in written],
        resumed=resumed,
    )


def _pairs_stage(
    pieces: list[Piece],
    column: str | None,
    config: DedupConfig,
    options: RayDedupOptions,
    partitions: int,
    lsh_bands: int,
    remote: dict[str, Any],
    stage_seconds: dict[str, float],
) -> dict[str, Any]:
    """Stages 1 to 4: the exact links and verified pairs (datasets), and the counts met on the way."""
    import ray

    settings = {"config": config, "threads": options.task_threads}
    clock = time.perf_counter()
    firsts = (
        ray.data.from_items([{"piece": i} for i in range(len(pieces))], override_num_blocks=max(1, len(pieces)))
        .map_batches(
            _featurise_pieces,
            batch_size=1,
            batch_format="pyarrow",
            fn_kwargs={"pieces": pieces, "column": column, **settings},
            **remote,
        )
        .repartition(partitions, keys=["hash_high"], sort=True)
        .map_batches(_first_of_each_text, batch_size=None, batch_format="pyarrow", **remote)
        .materialize()
    )
    counts = firsts.map_batches(_exact_counts, batch_size=None, batch_format="pyarrow").take_all()
    exact_duplicates = sum(int(c["duplicates"]) for c in counts)
    empty = sum(int(c["empty"]) for c in counts)
    first_empty = sorted(int(r) for c in counts for r in c["first_empty"])[:10]
    distinct_text_bytes = sum(int(c["first_text_bytes"]) for c in counts)
    exact_links = firsts.map_batches(_rows_where, batch_format="pyarrow", fn_kwargs={"test": "duplicate"})
    distinct = firsts.map_batches(_rows_where, batch_format="pyarrow", fn_kwargs={"test": "first"})
    stage_seconds["featurise_and_exact"] = time.perf_counter() - clock

    clock = time.perf_counter()
    candidates = (
        distinct.map_batches(_band_records, batch_format="pyarrow", fn_kwargs={"bands": lsh_bands}, **remote)
        .repartition(partitions, keys=["band", "band_hash"], sort=True)
        .map_batches(
            _bucket_pairs, batch_size=None, batch_format="pyarrow", fn_kwargs={"chain": config.verify}, **remote
        )
        .repartition(partitions, keys=["a"], sort=True)
        .map_batches(_unique_pairs, batch_size=None, batch_format="pyarrow", **remote)
        .materialize()
    )
    candidate_pairs = candidates.count()
    distinct_rows = sum(piece.rows for piece in pieces) - exact_duplicates - empty
    # rows, first rows' texts, bands: the exact shuffle; (band, key, row) a band of each first row;
    # pairs before and after deduplication (the latter joined twice, with one text each time).
    shuffle_bytes = firsts.size_bytes() + distinct_rows * lsh_bands * 20 + candidate_pairs * 16 * 3
    if config.verify:
        shuffle_bytes += 2 * (distinct_text_bytes + 8 * distinct_rows)
    stage_seconds["candidates"] = time.perf_counter() - clock

    clock = time.perf_counter()
    if config.verify and candidate_pairs:
        texts = distinct.select_columns(["row", "text"])
        pairs = _join_text(candidates, texts, "a", partitions)
        pairs = _join_text(pairs, texts, "b", partitions)
        edges = pairs.map_batches(
            _verified,
            batch_format="pyarrow",
            fn_kwargs={"config": config, "threads": options.task_threads},
            **remote,
        ).materialize()
    else:
        edges = candidates
    verified_pairs = edges.count()
    stage_seconds["verify"] = time.perf_counter() - clock
    return {
        "exact_links": exact_links,
        "edges": edges,
        "exact_duplicates": exact_duplicates,
        "empty": empty,
        "first_empty": first_empty,
        "candidate_pairs": candidate_pairs,
        "verified_pairs": verified_pairs,
        "shuffle_bytes": shuffle_bytes,
    }


# Ray Data appends advice on retries to the exception of a task that failed ("Failed to apply UDF
# transform after 1/1 attempts ... configure `ray.data.DataContext.get_current()` ..."). A mistake in
# the input is not transient: the advice would send a user to Ray's settings instead of the file the
# message names, and it breaks the one-line error every livo command ends with.
_RETRY_ADVICE = re.compile(r"\nFailed to .+ after \d+/\d+ attempts \(total backoff .*", re.DOTALL)


def _remote_args(options: RayDedupOptions) -> dict[str, Any]:
    """Resources of every task (Ray Data's own tasks retry a lost worker by themselves)."""
    args: dict[str, Any] = {"num_cpus": 1}
    if options.task_memory is not None:
        args["memory"] = options.task_memory
    return args


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# Stage functions. Each runs in a Ray worker on one block and is a pure function of it.


def _featurise_pieces(
    batch: pa.Table, pieces: Sequence[Piece], column: str | None, config: DedupConfig, threads: int
) -> Iterator[pa.Table]:
    for index in batch.column("piece").to_pylist():
        piece = pieces[index]
        _, texts = read_piece(piece, column)
        if len(texts) != piece.rows:
            raise InputError(f"{piece.describe()}: the file changed while being read")
        features = _native.dedup_block_features(
            texts,
            threshold=config.threshold,
            num_perm=config.num_perm,
            ngram=config.ngram,
            bands=config.bands,
            verify=config.verify,
            seed=config.seed,
            threads=threads,
        )
        bands = int(features["bands"])
        band_hashes = pa.FixedSizeListArray.from_arrays(pa.array(features["band_hashes"], pa.uint64()), bands)
        yield pa.table(
            {
                "row": pa.array(np.arange(piece.first_row, piece.first_row + piece.rows, dtype=np.int64)),
                "hash_high": pa.array(features["hash_high"], pa.uint64()),
                "hash_low": pa.array(features["hash_low"], pa.uint64()),
                "empty": pa.array(features["empty"], pa.bool_()),
                "text": texts.cast(pa.large_string()).fill_null(""),
                "band_hashes": band_hashes,
            }
        )


def _rows_where(block: pa.Table, test: str) -> pa.Table:
    """The rows of a block that pass a named test (vectorised; Dataset.filter calls Python per row)."""
    import pyarrow.compute as pc

    first, row = block.column("first"), block.column("row")
    if test == "duplicate":
        return block.filter(pc.and_(pc.greater_equal(first, 0), pc.not_equal(first, row))).select(["row", "first"])
    return block.filter(pc.equal(first, row)).select(["row", "text", "band_hashes"])


def _exact_counts(block: pa.Table) -> pa.Table:
    """Exact duplicates, empty rows and the first ten of them, and the first rows' text bytes, of one
    block."""
    import pyarrow.compute as pc

    first, rows = block.column("first").to_numpy(), block.column("row").to_numpy()
    empty = np.sort(rows[first < 0])
    text_bytes = pc.sum(pc.binary_length(block.column("text").filter(pa.array(first == rows)))).as_py() or 0
    return pa.table(
        {
            "duplicates": [int(((first >= 0) & (first != rows)).sum())],
            "empty": [len(empty)],
            "first_empty": pa.array([empty[:10].tolist()], pa.list_(pa.int64())),
            "first_text_bytes": [int(text_bytes)],
        }
    )


def _first_of_each_text(block: pa.Table) -> pa.Table:
    """Each row's ``first``: the smallest row with the same normal form (the same 128-bit hash), or -1
    for a row empty after normalisation (never merged)."""
    rows = block.column("row").to_numpy()
    high = block.column("hash_high").to_numpy()
    low = block.column("hash_low").to_numpy()
    order = np.lexsort((rows, low, high))
    high, low = high[order], low[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    first = rows[order][group_start]
    block = block.take(pa.array(order))
    first[block.column("empty").to_numpy(zero_copy_only=False)] = -1
    return pa.table(
        {
            "row": block.column("row"),
            "first": pa.array(first, pa.int64()),
            "text": block.column("text"),
            "band_hashes": block.column("band_hashes"),
        }
    )


def _band_records(block: pa.Table, bands: int) -> pa.Table:
    """One record per (row, band): the keys of the LSH buckets."""
    rows = block.column("row").to_numpy()
    hashes = block.column("band_hashes").combine_chunks().flatten().to_numpy().reshape(len(rows), bands)
    return pa.table(
        {
            "band": pa.array(np.tile(np.arange(bands, dtype=np.int32), len(rows))),
            "band_hash": pa.array(hashes.reshape(-1)),
            "row": pa.array(np.repeat(rows, bands)),
        }
    )


def _bucket_pairs(block: pa.Table, chain: bool) -> pa.Table:
    """Candidate pairs of each bucket, as the one-machine engine proposes them: with ``chain``
    (pairs are verified), every pair of a bucket of up to ``ALL_PAIRS_BUCKET`` members, and in a
    larger bucket each member with the first and with its predecessor; without, each member with
    the first."""
    band = block.column("band").to_numpy()
    key = block.column("band_hash").to_numpy()
    rows = block.column("row").to_numpy()
    order = np.lexsort((rows, key, band))
    band, key, rows = band[order], key[order], rows[order]
    n = len(rows)
    starts = np.ones(n, dtype=bool)
    starts[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    position = np.arange(n)
    group_start = np.maximum.accumulate(np.where(starts, position, 0))
    sizes = np.diff(np.append(np.flatnonzero(starts), n))
    size = np.repeat(sizes, sizes)  # each member's bucket size
    small = size <= ALL_PAIRS_BUCKET if chain else np.zeros(n, dtype=bool)
    member = ~starts & ~small
    a = [rows[group_start[member]]]
    b = [rows[member]]
    if chain:
        later = (position - group_start >= 2) & ~small
        a.append(rows[position[later] - 1])
        b.append(rows[later])
        bucket_starts_all = np.flatnonzero(starts)
        for m in np.unique(sizes[(sizes >= 2) & (sizes <= ALL_PAIRS_BUCKET)]):
            bucket_starts = bucket_starts_all[sizes == m]
            i, j = np.triu_indices(m, 1)
            a.append(rows[(bucket_starts[:, None] + i[None, :]).reshape(-1)])
            b.append(rows[(bucket_starts[:, None] + j[None, :]).reshape(-1)])
    return pa.table({"a": pa.array(np.concatenate(a), pa.int64()), "b": pa.array(np.concatenate(b), pa.int64())})


def _unique_pairs(block: pa.Table) -> pa.Table:
    pairs = np.stack([block.column("a").to_numpy(), block.column("b").to_numpy()], axis=1)
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
    return pa.table({"a": pa.array(pairs[:, 0], pa.int64()), "b": pa.array(pairs[:, 1], pa.int64())})


def _join_text(pairs: ray.data.Dataset, texts: ray.data.Dataset, side: str, partitions: int) -> ray.data.Dataset:
    """Each pair with the text of its row ``side`` (a hash join on the row)."""
    named = texts.rename_columns({"row": side, "text": f"text_{side}"})
    return pairs.join(named, "inner", partitions, on=(side,))


def _verified(block: pa.Table, config: DedupConfig, threads: int) -> pa.Table:
    keep = _native.dedup_verify_pairs(
        block.column("text_a").combine_chunks(),
        block.column("text_b").combine_chunks(),
        ngram=config.ngram,
        threshold=config.threshold,
        threads=threads,
    )
    return block.select(["a", "b"]).filter(pa.array(keep))


# Connected components by large-star / small-star rounds over edges (a, b) with a < b.


def _connected_components(
    edges: ray.data.Dataset, partitions: int, remote: dict[str, Any]
) -> tuple[ray.data.Dataset, int]:
    """Rounds of large-star then small-star until neither changes the graph. The fixed point is a
    star per component around its smallest row: every edge is (component minimum, member)."""
    current = edges.select_columns(["a", "b"])
    rounds = 0
    while True:
        rounds += 1
        changed = 0
        for step in (_large_star, _small_star):
            keyed = current.map_batches(_star_keys, batch_format="pyarrow", fn_kwargs={"large": step is _large_star})
            result = (
                keyed.repartition(partitions, keys=["u"], sort=True)
                .map_batches(step, batch_size=None, batch_format="pyarrow", **remote)
                .materialize()
            )
            changed += int(result.sum("changed") or 0)
            current = result.select_columns(["a", "b"])
        if changed == 0:
            return current, rounds


def _components_in_one_task(*blocks: pa.Table) -> pa.Table:
    """The stars of :func:`_connected_components`, by union-find over all edges at once."""
    edges = pa.concat_tables(blocks)
    nodes, roots = _native.dedup_components(edges.column("a").to_numpy(), edges.column("b").to_numpy())
    member = nodes != roots
    return pa.table({"a": pa.array(roots[member], pa.int64()), "b": pa.array(nodes[member], pa.int64())})


def _star_keys(block: pa.Table, large: bool) -> pa.Table:
    """Large-star sees each edge from both ends; small-star from its larger end only."""
    a, b = block.column("a").to_numpy(), block.column("b").to_numpy()
    if large:
        return pa.table({"u": np.concatenate([a, b]), "v": np.concatenate([b, a])})
    return pa.table({"u": b, "v": a})


def _neighbourhoods(block: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The unique (u, v) sorted by u, the index of each u's first record, and per record the
    smallest of u and u's neighbours."""
    pairs = np.stack([block.column("u").to_numpy(), block.column("v").to_numpy()], axis=1)
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
    u, v = pairs[:, 0], pairs[:, 1]
    firsts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.append(firsts, len(u)))
    smallest = np.minimum(u, np.repeat(np.minimum.reduceat(v, firsts), sizes)) if len(u) else v
    return u, v, firsts, smallest


def _large_star(block: pa.Table) -> pa.Table:
    """Each larger neighbour v of u is linked to the smallest of u and its neighbours."""
    u, v, _, smallest = _neighbourhoods(block)
    larger = v > u
    return _edges(smallest[larger], v[larger], changed=smallest[larger] != u[larger])


def _small_star(block: pa.Table) -> pa.Table:
    """u and its neighbours (here all smaller than u) are linked to the smallest of them; a u with a
    single neighbour keeps its edge as it was."""
    u, v, firsts, smallest = _neighbourhoods(block)
    sizes = np.diff(np.append(firsts, len(u)))
    several = np.repeat(sizes > 1, sizes)
    members = np.concatenate([v, u[firsts]])
    centres = np.concatenate([smallest, smallest[firsts]])
    changed = np.concatenate([several, several[firsts]])
    linked = members != centres
    return _edges(centres[linked], members[linked], changed=changed[linked])


def _edges(a: np.ndarray, b: np.ndarray, changed: np.ndarray) -> pa.Table:
    return pa.table(
        {"a": pa.array(a, pa.int64()), "b": pa.array(b, pa.int64()), "changed": pa.array(changed.astype(np.int64))}
    )


def _row_labels(
    exact_links: ray.data.Dataset, stars: ray.data.Dataset | None, partitions: int, remote: dict[str, Any]
) -> ray.data.Dataset:
    """(row, cluster) for every row not its own cluster: star members take their centre; exact
    duplicates take their first row's cluster."""
    if stars is None:
        return exact_links.rename_columns({"first": "cluster"})
    near = stars.rename_columns({"a": "cluster", "b": "row"})
    centre_of = near.rename_columns({"row": "first", "cluster": "first_cluster"})
    exact = exact_links.join(centre_of, "left_outer", partitions, on=("first",)).map_batches(
        _exact_label, batch_format="pyarrow", **remote
    )
    return near.select_columns(["row", "cluster"]).union(exact)


def _exact_label(block: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    cluster = pc.coalesce(block.column("first_cluster"), block.column("first"))
    return pa.table({"row": block.column("row"), "cluster": cluster.cast(pa.int64())})


def _with_piece(block: pa.Table, starts: np.ndarray, skip: list[int]) -> pa.Table:
    """Each label with the piece its row is in; the labels of pieces in ``skip`` (written) dropped."""
    rows = block.column("row").to_numpy()
    piece = np.searchsorted(starts, rows, side="right") - 1
    wanted = ~np.isin(piece, skip)
    return pa.table(
        {
            "row": pa.array(rows[wanted], pa.int64()),
            "cluster": block.column("cluster").cast(pa.int64()).filter(pa.array(wanted)),
            "piece": piece[wanted],
        }
    )


def job_fingerprint(
    files: list[Path], column: str | None, config: DedupConfig, options: RayDedupOptions, keep_only: bool
) -> dict[str, Any]:
    """What a resumed run must share with the run whose stages it reads back: the inputs (names,
    sizes, times), the column, the settings that change the result, and the piece size, since the
    parts are numbered by piece (another size would publish parts of two plans). The other options
    (partitions, task memory and threads) change how the work is spread, not what it makes."""
    return {
        "version": CHECKPOINT_VERSION,
        "inputs": file_fingerprint(files),
        "column": column,
        "config": asdict(config),
        "keep_only": keep_only,
        "piece_bytes": options.piece_bytes,
    }


def _part_name(piece: int) -> str:
    return f"part-{piece:05d}.parquet"


def _clusters_in(part: Path, keep_only: bool) -> int:
    """The clusters a written part holds: its kept rows (all of its rows with ``keep_only``)."""
    import pyarrow.parquet as pq

    if keep_only:
        return int(pq.read_metadata(part).num_rows)
    return int(np.count_nonzero(pq.read_table(part, columns=["keep"]).column("keep").to_numpy(zero_copy_only=False)))


def _without_labels(schema: pa.Schema | None) -> pa.Schema | None:
    """An input's columns less the two the output replaces."""
    if schema is None:
        return None
    return pa.schema([field for field in schema if field.name not in LABEL_COLUMNS])


def _write_piece(
    group: pa.Table,
    pieces: Sequence[Piece],
    column: str | None,
    columns: pa.Schema | None,
    folder: str,
    keep_only: bool,
) -> pa.Table:
    """Reads the piece again and writes it with the corpus's ``columns``, ``cluster_id`` and ``keep``."""
    index = int(group.column("piece")[0].as_py())
    piece = pieces[index]
    table, _ = read_piece(piece, column)
    if table.num_rows != piece.rows:
        raise InputError(f"{piece.describe()}: the file changed while being read")
    table = table.drop_columns([name for name in LABEL_COLUMNS if name in table.column_names])
    if columns is not None:
        table = conform(table, columns)
    cluster = np.arange(piece.first_row, piece.first_row + piece.rows, dtype=np.int64)
    rows = group.column("row").to_numpy()
    labelled = rows >= 0
    cluster[rows[labelled] - piece.first_row] = group.column("cluster").to_numpy()[labelled]
    keep = cluster == np.arange(piece.first_row, piece.first_row + piece.rows)
    table = table.append_column("cluster_id", pa.array(cluster)).append_column("keep", pa.array(keep))
    if keep_only:
        table = table.filter(table.column("keep"))
    name = _part_name(index)
    write_table(table, Path(folder) / name)
    return pa.table({"piece": [index], "file": [name], "clusters": [int(keep.sum())]})
