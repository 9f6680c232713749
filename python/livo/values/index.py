"""The value index: registry exemplars embedded into a FAISS index, saved as a folder.

Layout of an index folder (written atomically: a temp folder renamed into place):

- ``exemplars.faiss``: written by ``faiss.write_index`` (inner product on L2-normalised vectors);
- ``metadata.json``: format version, registry name + hash, embedder identity, index type and the
  SHA-256 of ``exemplars.faiss``, the exemplar → value mapping, per-value thresholds;
- ``registry.json``: the validated registry the index was built from (canonical JSON).

Loading checks all of it, so a different embedder, a damaged file or an edited registry gives a
clear error instead of quietly wrong selections.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from livo.errors import ConfigError, InputError
from livo.json_fields import JsonFields
from livo.permissions import replace_folder, write_atomic
from livo.values.classifier import CLASSIFIER_FILE, ValueClassifier
from livo.values.embedders import Embedder, EmbedderIdentity
from livo.values.matching import embedding_text
from livo.values.registry import Registry, parse_registry

if TYPE_CHECKING:
    import faiss

FORMAT = "livo-value-index"
FORMAT_VERSION = 1
INDEX_FILE = "exemplars.faiss"
METADATA_FILE = "metadata.json"
REGISTRY_FILE = "registry.json"
DEFAULT_THRESHOLD = 0.6
DEFAULT_NOUN_THRESHOLD = 0.3
DEFAULT_NOUN_MARGIN = 0.1
IndexType = Literal["flat", "hnsw", "ivf"]


@dataclass(frozen=True)
class Exemplar:
    text: str
    value_id: str | None  # None: a benign exemplar, negative for every value
    positive: bool


@dataclass
class ValueIndex:
    """An exemplar index in memory: FAISS index + exemplar table + registry + thresholds."""

    faiss_index: Any
    exemplars: list[Exemplar]
    registry: Registry
    embedder_identity: EmbedderIdentity
    index_type: IndexType
    thresholds: dict[str, float]
    noun_thresholds: dict[str, float] = field(default_factory=dict)
    noun_margin: float = DEFAULT_NOUN_MARGIN
    calibration: dict[str, Any] | None = None
    source: Path | None = None
    registry_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    classifier: ValueClassifier | None = None

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self.exemplars)))
        return self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)


def registry_exemplars(registry: Registry) -> list[Exemplar]:
    """Every exemplar in registry order; identical texts under several values stay separate rows."""
    rows: list[Exemplar] = []
    for value in registry.values:
        if not value.retrieval:
            continue
        rows += [Exemplar(t, value.id, True) for t in value.exemplars.positive]
        rows += [Exemplar(t, value.id, False) for t in value.exemplars.negative]
    rows += [Exemplar(t, None, False) for t in registry.benign_exemplars]
    return rows


def _make_faiss_index(vectors: np.ndarray, index_type: IndexType, params: dict[str, Any]) -> faiss.Index:
    import faiss

    dimension = vectors.shape[1]
    index: Any
    if index_type == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, int(params.get("m", 32)), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params.get("ef_construction", 80))
        index.hnsw.efSearch = int(params.get("ef_search", 64))
    elif index_type == "ivf":
        nlist = int(params.get("nlist", max(1, min(int(np.sqrt(len(vectors))), len(vectors) // 8 or 1))))
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = int(params.get("nprobe", max(1, nlist // 2)))
    else:
        raise ConfigError(f"index type must be flat, hnsw or ivf, not {index_type!r}")
    index.add(vectors)
    return index


def build_index(
    registry: Registry,
    embedder: Embedder,
    index_type: IndexType = "flat",
    params: dict[str, Any] | None = None,
    registry_source: str | None = None,
) -> ValueIndex:
    """Embeds all exemplars of ``registry`` and indexes them; thresholds start at a default until
    ``calibrate`` replaces them."""
    exemplars = registry_exemplars(registry)
    vectors = embedder.embed([embedding_text(e.text) for e in exemplars])  # as prompts are embedded
    index = _make_faiss_index(vectors, index_type, params or {})
    return ValueIndex(
        faiss_index=index,
        exemplars=exemplars,
        registry=registry,
        embedder_identity=embedder.identity,
        index_type=index_type,
        thresholds={v.id: DEFAULT_THRESHOLD for v in registry.values},
        noun_thresholds={v.id: DEFAULT_NOUN_THRESHOLD for v in registry.values if v.kind == "bias"},
        registry_source=registry_source,
        extra={"params": params or {}},
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _metadata(index: ValueIndex, index_sha256: str, classifier_entry: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_unix": int(time.time()),
        "registry": {
            "name": index.registry.name,
            "sha256": index.registry.content_hash(),
            "source": index.registry_source,
        },
        "embedder": index.embedder_identity.to_json(),
        "index": {
            "type": index.index_type,
            "file": INDEX_FILE,
            "sha256": index_sha256,
            "ntotal": len(index.exemplars),
            "params": index.extra.get("params", {}),
        },
        "exemplars": [{"text": e.text, "value_id": e.value_id, "positive": e.positive} for e in index.exemplars],
        "thresholds": index.thresholds,
        "noun_thresholds": index.noun_thresholds,
        "noun_margin": index.noun_margin,
        "calibration": index.calibration,
        "classifier": classifier_entry,
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Writes JSON via a temp file + rename, so readers never see half a file."""
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False).encode())


def save_index(index: ValueIndex, directory: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Writes ``index`` to ``directory`` atomically: readers see the old folder or the new one.
    ``overwrite=False``: a folder that holds anything is not replaced (:class:`FileExistsError`),
    also when another process wrote it while this one worked."""
    import faiss

    target = Path(directory)
    if target.is_dir() and not (target / METADATA_FILE).exists() and any(target.iterdir()):
        raise InputError(f"{target}: exists and is not a value index; refusing to replace it")
    with replace_folder(target, keep_existing=not overwrite) as staging:
        faiss.write_index(index.faiss_index, str(staging / INDEX_FILE))
        write_json_atomic(staging / REGISTRY_FILE, index.registry.model_dump(mode="json"))
        entry = _write_classifier(staging, index.classifier) if index.classifier is not None else None
        write_json_atomic(staging / METADATA_FILE, _metadata(index, _sha256(staging / INDEX_FILE), entry))
    index.source = target
    return target


def _write_classifier(directory: Path, classifier: ValueClassifier) -> dict[str, Any]:
    data, meta = classifier.to_bytes()
    write_atomic(directory / CLASSIFIER_FILE, data)
    return {"file": CLASSIFIER_FILE, "sha256": hashlib.sha256(data).hexdigest(), **meta}


def update_classifier(directory: str | os.PathLike[str], classifier: ValueClassifier | None) -> None:
    """Replaces the value classifier of a saved index (None: removes it). The arrays are written
    first and the metadata, which holds their SHA-256, last, both atomically: a reader sees either
    the old pair or the new one, and a torn pair fails its checksum."""
    directory = Path(directory)
    metadata = _read_metadata(directory)
    if classifier is None:
        metadata["classifier"] = None
        write_json_atomic(directory / METADATA_FILE, metadata)
        (directory / CLASSIFIER_FILE).unlink(missing_ok=True)
        return
    metadata["classifier"] = _write_classifier(directory, classifier)
    write_json_atomic(directory / METADATA_FILE, metadata)


def _read_classifier(directory: Path, entry: dict[str, Any] | None) -> ValueClassifier | None:
    if not entry:
        return None
    name = str(entry.get("file") or CLASSIFIER_FILE)
    if Path(name).name != name or name in (".", ".."):
        # The index is one folder, copied and checksummed as one: a classifier elsewhere is not its own.
        raise InputError(
            f"{directory / METADATA_FILE}: corrupt index metadata (classifier.file {name!r} is not a file name "
            "in the index folder); rebuild the index"
        )
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: the index's value classifier is missing: {error}; rebuild the index") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise InputError(f"{path}: corrupt value classifier (its SHA-256 differs from {METADATA_FILE}); rebuild it")
    return ValueClassifier.from_bytes(data, entry, str(path))


def update_thresholds(
    directory: str | os.PathLike[str],
    thresholds: dict[str, float],
    noun_thresholds: dict[str, float],
    noun_margin: float,
    calibration: dict[str, Any],
) -> None:
    """Rewrites only ``metadata.json`` of a saved index (atomically) with new thresholds."""
    path = Path(directory) / METADATA_FILE
    metadata = _read_metadata(Path(directory))
    metadata["thresholds"] = thresholds
    metadata["noun_thresholds"] = noun_thresholds
    metadata["noun_margin"] = noun_margin
    metadata["calibration"] = calibration
    write_json_atomic(path, metadata)


def _read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: value index folder not found")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{directory}: not a value index (no {METADATA_FILE}); build one with `livo values build-index`"
        ) from None
    except ValueError as error:
        raise InputError(f"{path}: corrupt index metadata (not JSON: {error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise InputError(f"{path}: not a LiVO value index metadata file")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: index format version {metadata.get('format_version')} is not supported "
            f"(this LiVO reads {FORMAT_VERSION}); rebuild the index"
        )
    _check_metadata_fields(metadata, path)
    return metadata


def _check_metadata_fields(metadata: dict[str, Any], path: Path) -> None:
    """Checks the type of every field the loader reads, so a damaged or hand-edited metadata file is
    reported by file and field instead of failing deep inside the loader (or loading wrong numbers)."""
    top = JsonFields(path, metadata, what="corrupt index metadata", advice="; rebuild the index")
    registry = top.object("registry")
    registry.text("sha256")
    registry.text("source", optional=True)
    embedder = top.object("embedder")
    for key in ("spec", "name", "weights_sha256"):
        embedder.text(key)
    embedder.integer("dimension")
    index = top.object("index")
    index.text("sha256")
    index.text("type", optional=True)
    params = index.optional_object("params")
    if params is not None:
        params.integer("nprobe", optional=True)
    for exemplar in top.each("exemplars"):
        exemplar.text("text")
        exemplar.text("value_id", optional=True)
        exemplar.flag("positive")
    top.numbers("thresholds")
    top.numbers("noun_thresholds", optional=True)
    top.number("noun_margin", optional=True)
    top.mapping("calibration", optional=True)
    classifier = top.optional_object("classifier")
    if classifier is not None and classifier.raw:
        # Its file, checksum, names and penalty (null: the index has none).
        classifier.text("file", optional=True)
        classifier.text("sha256")
        classifier.texts("targets")
        classifier.texts("feature_names")
        classifier.number("l2")
        classifier.mapping("summary", optional=True)


def _faiss_type(index: faiss.Index) -> str:
    """Which of the index types ``index`` is, by its FAISS class (the metric wrapper included)."""
    import faiss

    name = type(faiss.downcast_index(index)).__name__
    for kind, prefix in (("hnsw", "IndexHNSW"), ("ivf", "IndexIVF"), ("flat", "IndexFlat")):
        if name.startswith(prefix):
            return kind
    return name


def _check_threshold_ids(
    thresholds: dict[str, float], noun_thresholds: dict[str, float], registry: Registry, path: Path
) -> None:
    """A threshold table keyed by other ids than the registry's values (a typo in a hand edit) made
    every value it misses never apply, without a word."""
    ids = set(registry.ids)
    bias = {value.id for value in registry.values if value.kind == "bias"}
    for name, table, expected, exact in (
        ("thresholds", thresholds, ids, True),
        ("noun_thresholds", noun_thresholds, bias, False),
    ):
        unknown = sorted(set(table) - expected)
        missing = sorted(expected - set(table)) if exact else []
        if unknown or missing:
            problem = f"no value {unknown[0]!r} in the registry" if unknown else f"no threshold for {missing[0]!r}"
            raise InputError(f"{path}: corrupt index metadata ({name}: {problem}); rebuild the index")


def load_index(
    directory: str | os.PathLike[str],
    embedder_identity: EmbedderIdentity | None = None,
    registry: Registry | None = None,
) -> ValueIndex:
    """Reads and verifies an index folder. ``embedder_identity``, when given, must match the one
    the index was built with; ``registry``, when given, must be the registry it was built from.

    A folder replaced while it is read (a new index saved over it, :func:`save_index`) is read
    again: its files read by name came from two indexes, whose checksums disagree, and that is no
    corruption to report."""
    for attempt in range(_READ_ATTEMPTS):
        before = _folder_identity(directory)
        try:
            return _read_index(Path(directory), embedder_identity, registry)
        except (InputError, FileNotFoundError):
            if attempt + 1 == _READ_ATTEMPTS or _folder_identity(directory) == before:
                raise
            time.sleep(0.002 * (attempt + 1))
    raise AssertionError("unreachable")


_READ_ATTEMPTS = 10  # a writer saving in a loop replaces the folder every few milliseconds


def _folder_identity(directory: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """Which folder is at ``directory`` now. Its change time too: a folder renamed into place gets
    a new one, and a replaced folder's inode number is soon reused by the next staging folder."""
    try:
        found = os.stat(directory)
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_ctime_ns


def _read_index(directory: Path, embedder_identity: EmbedderIdentity | None, registry: Registry | None) -> ValueIndex:
    import faiss

    metadata = _read_metadata(directory)
    try:
        recorded = EmbedderIdentity(**metadata["embedder"])
        index_info = metadata["index"]
        exemplars = [Exemplar(e["text"], e["value_id"], bool(e["positive"])) for e in metadata["exemplars"]]
        thresholds = {str(k): float(v) for k, v in metadata["thresholds"].items()}
        noun_thresholds = {str(k): float(v) for k, v in (metadata.get("noun_thresholds") or {}).items()}
        registry_hash = metadata["registry"]["sha256"]
    except (KeyError, TypeError) as error:
        raise InputError(f"{directory / METADATA_FILE}: corrupt index metadata (missing or bad {error})") from None

    index_path = directory / INDEX_FILE
    if not index_path.exists():
        raise InputError(f"{directory}: index file {INDEX_FILE} is missing")
    if _sha256(index_path) != index_info.get("sha256"):
        raise InputError(
            f"{index_path}: corrupt index (its SHA-256 differs from the one in {METADATA_FILE}); rebuild it"
        )
    try:
        faiss_index = faiss.read_index(str(index_path))
    except RuntimeError as error:
        raise InputError(f"{index_path}: corrupt index, FAISS cannot read it: {str(error).splitlines()[0]}") from None
    if faiss_index.ntotal != len(exemplars) or faiss_index.d != recorded.dimension:
        raise InputError(
            f"{index_path}: corrupt index ({faiss_index.ntotal} vectors of dimension {faiss_index.d}; "
            f"metadata says {len(exemplars)} of dimension {recorded.dimension})"
        )
    params = index_info.get("params") or {}
    index_type = index_info.get("type", "flat")
    if index_type not in get_args(IndexType) or _faiss_type(faiss_index) != index_type:
        raise InputError(
            f"{directory / METADATA_FILE}: corrupt index metadata (index.type {index_type!r}, but {INDEX_FILE} "
            f"holds a {_faiss_type(faiss_index)} index); rebuild the index"
        )
    if index_type == "ivf" and "nprobe" in params:
        faiss.extract_index_ivf(faiss_index).nprobe = int(params["nprobe"])

    try:
        stored_registry = parse_registry(
            json.loads((directory / REGISTRY_FILE).read_text(encoding="utf-8")), str(directory / REGISTRY_FILE)
        )
    except (OSError, ValueError) as error:
        raise InputError(f"{directory / REGISTRY_FILE}: missing or corrupt: {error}") from None
    if stored_registry.content_hash() != registry_hash:
        raise InputError(
            f"{directory / REGISTRY_FILE}: does not match the registry hash in {METADATA_FILE}; rebuild the index"
        )
    if exemplars != registry_exemplars(stored_registry):
        # The vectors are rows of the registry's exemplars: a table edited or reordered by hand would
        # give a vector another row's value (and an unknown value id failed in the middle of a query).
        raise InputError(
            f"{directory / METADATA_FILE}: its exemplar table is not the registry's exemplars in order "
            f"({len(exemplars)} rows, the registry in {REGISTRY_FILE} has {len(registry_exemplars(stored_registry))}); "
            "the index folder was edited: rebuild it"
        )
    _check_threshold_ids(thresholds, noun_thresholds, stored_registry, directory / METADATA_FILE)
    if registry is not None and registry.content_hash() != registry_hash:
        raise ConfigError(
            f"{directory}: the registry no longer matches this index (registry {registry.name!r} hashes to "
            f"{registry.content_hash()[:12]}, the index was built from {registry_hash[:12]}); "
            "rebuild it with `livo values build-index`"
        )
    if embedder_identity is not None:
        problem = recorded.mismatch(embedder_identity)
        if problem:
            raise ConfigError(
                f"{directory}: built with embedder {recorded.name!r} ({recorded.spec}), queried with "
                f"{embedder_identity.name!r}: {problem}; rebuild the index for this embedder"
            )
    return ValueIndex(
        faiss_index=faiss_index,
        exemplars=exemplars,
        registry=stored_registry,
        embedder_identity=recorded,
        index_type=index_type,
        thresholds=thresholds,
        noun_thresholds=noun_thresholds,
        noun_margin=float(DEFAULT_NOUN_MARGIN if metadata.get("noun_margin") is None else metadata["noun_margin"]),
        calibration=metadata.get("calibration"),
        source=directory,
        registry_source=metadata["registry"].get("source"),
        extra={"params": params},
        classifier=_read_classifier(directory, metadata.get("classifier")),
    )
