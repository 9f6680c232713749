"""benchmarks/heldout_people.py at tiny sizes, on the shipped model and value encoder (whose pairs
show every person): the value turns people to their other colour, the counts add up, and the
default-colour projection is scaled on the trained people."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from benchmark_scripts import load_benchmark
from livo.errors import InputError
from livo.models import LiVOPipeline
from livo.toyworld.evaluation import toy_selector
from livo.toyworld.grammar import DEFAULT_ATTRIBUTE, PEOPLE

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def benchmark() -> ModuleType:
    return load_benchmark("heldout_people")


@pytest.fixture(scope="module")
def shipped() -> LiVOPipeline:
    pipeline = LiVOPipeline.from_pretrained("builtin:toyworld", selector=toy_selector, bias_probability=1.0)
    pipeline.base.set_progress_bar_config(disable=True)
    return pipeline


def test_the_value_applied_to_every_image_turns_each_person_to_the_other_colour(shipped) -> None:  # noqa: ANN001
    module = benchmark()
    base = module.colour_and_fidelity(shipped.base, 3, 12, 5.0, 7)
    steered = module.colour_and_fidelity(shipped, 3, 12, 5.0, 7)
    assert set(base) == set(steered) == set(PEOPLE)
    for person in PEOPLE:
        for rows in (base, steered):
            assert rows[person]["n"] == 3 and rows[person]["orange"] + rows[person]["teal"] <= 3
        default = DEFAULT_ATTRIBUTE[person]
        other = "teal" if default == "orange" else "orange"
        assert base[person][default] >= 2, (person, base[person])
        assert steered[person][other] >= 2, (person, steered[person])
    assert module.held_out_colours(steered, ("doctor", "nurse")) == ["teal", "orange"]
    table = module.markdown({"base (no value)": base, "shipped": steered}, ("hero", "thief"))
    assert "hero (orange, held out)" in table and "doctor (orange) |" in table and table.count("\n") == 3


def test_the_projection_is_scaled_on_the_trained_people_and_reads_their_defaults(shipped) -> None:  # noqa: ANN001
    projection = benchmark().default_colour_projection(shipped.base, ("hero", "thief"))
    trained = [p for p in PEOPLE if p not in ("hero", "thief")]
    assert set(projection) == set(PEOPLE)
    assert sum(abs(projection[p]) for p in trained) / len(trained) == pytest.approx(1.0, abs=2e-3)
    assert all((projection[p] > 0) == (DEFAULT_ATTRIBUTE[p] == "orange") for p in trained)


def test_an_unknown_held_out_person_is_named(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    arguments = ["heldout_people.py", "--out", str(tmp_path), "--value-encoder", "x", "--held-out", "hero,ghost"]
    monkeypatch.setattr(sys, "argv", arguments)
    with pytest.raises(InputError, match="--held-out: ghost not toy-world people"):
        benchmark().main()
