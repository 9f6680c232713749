"""The build report: counts per stage, drops by reason, pairs per value and category, the balance of
bias classes, and throughput. Written as JSON next to the shards and printed as text."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from livo.permissions import write_atomic

# Reasons the plan drops a prompt before anything is generated. ``drops`` counts them in prompts,
# beside the judges' reasons, which count generated pairs; the text report keeps the two apart.
PROMPT_DROP_REASONS = frozenset(
    {"duplicate_prompt", "empty_prompt", "no_value", "value_not_built", "rewrite_unchanged"}
)


@dataclass
class BuildReport:
    """What a build did. ``dataset_*`` numbers cover the whole output (earlier runs included);
    ``generated``/``kept``/``drops`` and ``balance`` cover this run."""

    run_id: str
    output: str
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    skipped_stored: int = 0
    skipped_dropped: int = 0
    generated: int = 0
    kept: int = 0
    images: int = 0
    generation_seconds: float = 0.0
    wall_seconds: float = 0.0
    actors: int = 0
    # The node address of each actor when generation started and when it ended (an actor restarted
    # after losing its node is elsewhere at the end).
    actor_nodes: list[str] = field(default_factory=list)
    actor_nodes_at_end: list[str] = field(default_factory=list)
    retried_batches: int = 0
    failures: list[str] = field(default_factory=list)
    balance: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    dataset_rows: int = 0
    dataset_shards: int = 0
    pairs_per_value: dict[str, int] = field(default_factory=dict)
    pairs_per_category: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / self.generation_seconds if self.generation_seconds > 0 else 0.0

    @property
    def keep_rate(self) -> float:
        return self.kept / self.generated if self.generated else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["images_per_second"] = round(self.images_per_second, 3)
        data["kept_pairs_per_second"] = (
            round(self.kept / self.generation_seconds, 3) if self.generation_seconds else 0.0
        )
        data["keep_rate"] = round(self.keep_rate, 4)
        data["generation_seconds"] = round(self.generation_seconds, 2)
        data["wall_seconds"] = round(self.wall_seconds, 2)
        return data

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Atomically writes the JSON report."""
        return write_atomic(path, (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode())

    def format(self) -> str:
        """The report as a few lines of text for the terminal or a job log."""
        lines = [f"build {self.run_id} -> {self.output}"]
        prompt_drops = {k: v for k, v in self.drops.items() if k in PROMPT_DROP_REASONS}
        pair_drops = {k: v for k, v in self.drops.items() if k not in PROMPT_DROP_REASONS}
        for stage, counts in self.stages.items():
            line = f"  {stage:<10} " + ", ".join(f"{k} {v}" for k, v in counts.items())
            if stage == "plan" and prompt_drops:
                line += "; prompts dropped: " + ", ".join(f"{k} {v}" for k, v in _largest_first(prompt_drops))
            lines.append(line)
        lines.append(f"  resume     already stored {self.skipped_stored}, already dropped {self.skipped_dropped}")
        lines.append(
            f"  generate   {self.generated} pairs, {self.images} images in {self.generation_seconds:.1f} s "
            f"({self.images_per_second:.2f} images/s) on {self.actors} actor(s), "
            f"{self.retried_batches} batch(es) retried"
        )
        if self.actor_nodes:
            moved = (
                ""
                if self.actor_nodes_at_end in ([], self.actor_nodes)
                else f"; at the end {', '.join(self.actor_nodes_at_end)}"
            )
            lines.append(f"  actors     on nodes {', '.join(self.actor_nodes)}{moved}")
        lines.append(f"  judge      kept {self.kept} of {self.generated} pairs ({100 * self.keep_rate:.1f}%)")
        for reason, count in _largest_first(pair_drops):
            lines.append(f"    dropped  {reason}: {count}")
        for value_id, sides in self.balance.items():
            shown = ", ".join(f"{k} {v}" for k, v in sorted(sides.get("violating", {}).items()))
            asked = ", ".join(f"{k} {v}" for k, v in sorted(sides.get("aligned", {}).items()))
            lines.append(f"  balance    {value_id}: violating images showed [{shown}], aligned classes [{asked}]")
        lines.append(
            f"  dataset    {self.dataset_rows} pairs in {self.dataset_shards} shard(s), "
            f"verified {'ok' if self.verified else 'FAILED'}"
        )
        for value_id, count in sorted(self.pairs_per_value.items()):
            lines.append(f"    value    {value_id}: {count}")
        for category, count in sorted(self.pairs_per_category.items()):
            lines.append(f"    category {category}: {count}")
        lines.append(f"  wall time  {self.wall_seconds:.1f} s")
        return "\n".join(lines)


def _largest_first(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
