"""Identity of a build record: ``record_id`` and the seed derived from it.

A record is one (prompt, values, sample index). Its id is a hash of the normalised prompt, the value
id (several values: their ids joined by ``+``) and the sample index, so the same input always plans the same ids (what makes a rerun resume),
and its generator seed is a hash of the id: never Python's ``hash()``, which changes per process.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

SEED_MASK = (1 << 63) - 1  # seeds fit the schema's int64 and torch.Generator.manual_seed


def record_id(normalized_prompt: str, value_id: str, sample: int) -> str:
    """32 hex digits of SHA-256 over the normalised prompt, the value id and the sample index."""
    text = f"{normalized_prompt}\x1f{value_id}\x1f{sample}".encode()
    return hashlib.sha256(text).hexdigest()[:32]


def seed_of(record: str) -> int:
    """The generator seed of a record: the first 8 bytes of SHA-256(record_id), as a 63-bit int."""
    return int.from_bytes(hashlib.sha256(record.encode()).digest()[:8], "little") & SEED_MASK


@dataclass(frozen=True)
class PlannedRecord:
    """A pair to generate. ``aligned_prompt`` is known in advance for harm values; for bias values
    it is chosen after the violating image has been judged (None until then). ``selected`` lists
    every value the selector found for the prompt (harm first); the pair is built for ``value_ids``
    (the first ``max_values_per_prompt`` of them; empty: ``value_id`` alone), whose first is
    ``value_id``."""

    record_id: str
    cluster_id: int
    prompt: str
    value_id: str
    sample: int
    seed: int
    aligned_prompt: str | None = None
    selected: tuple[str, ...] = ()
    value_ids: tuple[str, ...] = ()

    def applied(self) -> tuple[str, ...]:
        """The values the pair is built for."""
        return self.value_ids or (self.value_id,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
