"""The value index and selector with the real MiniLM embedder and real FAISS: build → save → load,
identity and integrity checks, the selection stages, calibration, other embedders, and the CLI.
MiniLM is loaded once for the whole module."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.cli import main
from livo.errors import ConfigError, InputError, InvalidParameterError
from livo.values.calibration import calibrate
from livo.values.embedders import load_embedder, minilm_path
from livo.values.evaluation import KeywordBaseline, evaluate_selector, load_labelled
from livo.values.index import INDEX_FILE, METADATA_FILE, build_index, load_index, save_index
from livo.values.registry import builtin_registry_path, load_registry
from livo.values.selector import ValueSelector

PROMPTS = [
    "a bloody knight",
    "a portrait of a nurse",
    "a female doctor",
    "a female asian doctor",
    "an asian nurse",
    "a glass of blood orange juice",
    "a calendar with a deadline",
    "a man wearing nothing at all",
    "the dead climbing out of their graves",
    "a bowl of soup",
    "",
    "ＺＯＭＢＩＥ on the street",
]


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("minilm")


@pytest.fixture(scope="module")
def default_registry():
    return load_registry(builtin_registry_path("default"))


@pytest.fixture(scope="module")
def built(minilm, default_registry):
    return build_index(default_registry, minilm)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, built):
    directory = tmp_path_factory.mktemp("values") / "index"
    save_index(built, directory)
    return directory


def test_minilm_identity_and_unit_vectors(minilm):
    identity = minilm.identity
    assert (identity.name, identity.dimension, identity.spec) == ("all-MiniLM-L6-v2", 384, "minilm")
    assert len(identity.weights_sha256) == 64
    vectors = minilm.embed(["a doctor", "a nurse", "a doctor"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ minilm.embed(["a bowl of soup"])[0])


def test_build_save_load_gives_identical_selections(index_dir, built, minilm):
    before = ValueSelector(built, minilm).select(PROMPTS)
    loaded = ValueSelector.load(index_dir, embedder=minilm)
    assert loaded.select(PROMPTS) == before
    assert (index_dir / INDEX_FILE).stat().st_mode & 0o044  # readable by others (not a private temp file)


TOY_PROMPTS = ["a doctor", "a teal nurse", "a zombie kite", "a box", "an orange hero", "a thief", "a bloody tree"]


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_index_types_round_trip(tmp_path, minilm, index_type):
    registry = load_registry(builtin_registry_path("toyworld"))
    index = build_index(registry, minilm, index_type=index_type, params={"nlist": 2, "nprobe": 2})
    before = ValueSelector(index, minilm).select(TOY_PROMPTS)
    save_index(index, tmp_path / "idx")
    loaded = ValueSelector.load(tmp_path / "idx", embedder=minilm)
    assert loaded.index.index_type == index_type
    assert loaded.select(TOY_PROMPTS) == before
    assert [s.value_id for s in before] == [
        "colour_equality",
        None,
        "no_zombie",
        None,
        None,
        "colour_equality",
        "no_blood",
    ]


def test_selection_stages(index_dir, minilm):
    selector = ValueSelector.load(index_dir, embedder=minilm)
    chosen = {p: s for p, s in zip(PROMPTS, selector.select(PROMPTS))}
    assert (chosen["a bloody knight"].value_id, chosen["a bloody knight"].stage) == ("no-blood", "keyword")
    assert chosen["ＺＯＭＢＩＥ on the street"].value_id == "no-horror"
    assert (chosen["a female doctor"].value_id, chosen["a female doctor"].stage) == (
        "racial-equality",
        "explicit-attribute",
    )
    assert (chosen["a female asian doctor"].value_id, chosen["a female asian doctor"].stage) == (
        None,
        "explicit-attribute",
    )
    assert chosen["an asian nurse"].value_id == "gender-equality"
    assert chosen["a portrait of a nurse"].value_id == "gender-equality"
    assert chosen["a glass of blood orange juice"].value_id is None
    assert chosen["a calendar with a deadline"].value_id is None
    assert chosen["a bowl of soup"].value_id is None and chosen[""].value_id is None
    assert (chosen["a man wearing nothing at all"].value_id, chosen["a man wearing nothing at all"].stage) == (
        "no-nudity",
        "retrieval",
    )


def test_select_takes_a_list_of_strings_and_refuses_the_rest(index_dir, minilm):
    selector = ValueSelector.load(index_dir, embedder=minilm)
    # One string was a selection per letter; bytes the text "b'...'"; None the word "none".
    with pytest.raises(TypeError, match="not one string: select\\(\\[prompt\\]\\)"):
        selector.select("a bloody knight")
    with pytest.raises(TypeError, match=r"prompts\[1\] is bytes \(b'a bloody knight'\), not a string"):
        selector.select(["a nurse", b"a bloody knight"])
    with pytest.raises(TypeError, match=r"prompts\[0\] is int"):
        selector.select([42])
    with pytest.raises(InvalidParameterError, match="batch_size=0: must be a positive integer"):
        selector.select(["a nurse"], batch_size=0)
    missing, empty = selector.select([None, ""])  # type: ignore[list-item]
    assert missing == empty and missing.value_ids == []  # a missing prompt is an empty one, as in a file


def test_pipeline_adapter_returns_value_text_and_kind(index_dir, minilm):
    from livo.models import ValueChoice

    selector = ValueSelector.load(index_dir, embedder=minilm)
    harm = selector("a bloody knight")
    assert harm == ValueChoice("no-blood", "bloody content is considered inappropriate", "harm")
    assert selector("a portrait of a nurse").kind == "bias"
    assert selector("a bowl of soup") is None


def test_judge_decides_borderline_prompts(index_dir, minilm):
    class FirstCandidate:
        def __init__(self):
            self.asked = []

        def decide(self, prompt, candidates):
            self.asked.append((prompt, [c.id for c in candidates]))
            return candidates[0].id if candidates else None

    judge = FirstCandidate()
    selector = ValueSelector.load(index_dir, embedder=minilm, judge=judge)
    selector.judge_band = 1.0  # ask about every retrieval decision
    selections = selector.select(["a bloody knight", "a portrait of a nurse"])
    assert selections[0].stage == "keyword"  # rules are never second-guessed
    asked = dict(judge.asked)
    assert "no-blood" not in asked.get("a bloody knight", [])
    assert selections[1].stage == "judge" and "a portrait of a nurse" in asked


def test_calibrated_selector_meets_targets_and_beats_keyword_baseline(minilm, default_registry, built):
    index = copy.copy(built)
    selector = ValueSelector(index, minilm)
    result = calibrate(selector, load_labelled(split="calibration"), grid=tuple(np.arange(0.2, 0.95, 0.02)))
    index.thresholds, index.noun_thresholds, index.noun_margin = (
        result.thresholds,
        result.noun_thresholds,
        result.noun_margin,
    )
    test = load_labelled(split="test")
    ours = evaluate_selector(selector, test, default_registry.ids)
    baseline = evaluate_selector(KeywordBaseline(default_registry), test, default_registry.ids)
    assert ours.macro_f1 >= 0.90 and ours.benign_fpr <= 0.05
    assert ours.macro_f1 > baseline.macro_f1 and ours.benign_fpr < baseline.benign_fpr


def _tiny_sentence_transformer(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, folder / name)
    torch.manual_seed(0)
    BertModel(
        BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True})
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    return folder


def test_a_different_embedder_is_refused(tmp_path, index_dir, minilm):
    other = load_embedder(f"st:{_tiny_sentence_transformer(tmp_path / 'tiny-st')}", reuse=False)
    assert other.identity.dimension == 32 and other.embed(["a doctor"]).shape == (1, 32)
    with pytest.raises(ConfigError, match="built with embedder 'all-MiniLM-L6-v2'.*rebuild"):
        ValueSelector.load(index_dir, embedder=other)
    with pytest.raises(ConfigError, match="dimension"):
        load_index(index_dir, embedder_identity=other.identity)


def test_an_embedder_folder_given_relative_is_recorded_absolute(tmp_path, monkeypatch):
    """An index built with st:models/x recorded the relative path and could not be loaded from
    another working directory."""
    folder = _tiny_sentence_transformer(tmp_path / "tiny-st")
    monkeypatch.chdir(tmp_path)
    assert load_embedder("st:tiny-st", reuse=False).identity.spec == f"st:{folder.resolve()}"


def test_clip_text_encoder_embedder(tmp_path, default_registry):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from livo.models.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(max_length=16)
    torch.manual_seed(0)
    CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).save_pretrained(tmp_path / "pipe" / "text_encoder")
    tokenizer.save_pretrained(tmp_path / "pipe" / "tokenizer")
    pooled = load_embedder(f"clip:{tmp_path / 'pipe'}", reuse=False)
    mean = load_embedder(f"clip:{tmp_path / 'pipe'}:mean", reuse=False)
    assert pooled.identity.dimension == 32 and pooled.identity.weights_sha256 == mean.identity.weights_sha256
    assert pooled.identity.name != mean.identity.name
    vectors = pooled.embed(["a bloody doctor", "a cat in the park"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors, mean.embed(["a bloody doctor", "a cat in the park"]))
    save_index(build_index(default_registry, pooled), tmp_path / "idx")
    selector = ValueSelector.load(tmp_path / "idx", embedder=pooled)
    assert selector.select(["a bloody doctor"])[0].value_id == "no-blood"
    with pytest.raises(ConfigError, match="not a diffusion pipeline folder"):
        load_embedder(f"clip:{tmp_path}", reuse=False)


def test_corrupt_or_missing_index_files_are_clear_errors(tmp_path, index_dir):
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    data = bytearray((broken / INDEX_FILE).read_bytes())
    data[100] ^= 0xFF
    (broken / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt index .*SHA-256"):
        load_index(broken)
    # Garbage whose hash is (re)recorded: FAISS itself must refuse it, with a clear message.
    import hashlib

    (broken / INDEX_FILE).write_bytes(b"not a faiss index at all")
    metadata = json.loads((broken / METADATA_FILE).read_text())
    metadata["index"]["sha256"] = hashlib.sha256(b"not a faiss index at all").hexdigest()
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(InputError, match="FAISS cannot read it"):
        load_index(broken)
    # An exemplar table edited by hand (reversed: every vector now has another row's value).
    shutil.copy(index_dir / INDEX_FILE, broken / INDEX_FILE)
    metadata = json.loads((index_dir / METADATA_FILE).read_text())
    metadata["exemplars"].reverse()
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(InputError, match="exemplar table is not the registry's exemplars in order"):
        load_index(broken)
    (broken / METADATA_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        load_index(broken)
    (broken / METADATA_FILE).unlink()
    with pytest.raises(InputError, match="not a value index"):
        load_index(broken)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "nowhere")


def test_an_edited_registry_no_longer_matches(tmp_path, minilm):
    source = tmp_path / "registry.yaml"
    shutil.copy(builtin_registry_path("toyworld"), source)
    save_index(build_index(load_registry(source), minilm, registry_source=str(source)), tmp_path / "idx")
    ValueSelector.load(tmp_path / "idx", embedder=minilm)
    source.write_text(source.read_text().replace("keywords: [bloody]", "keywords: [bloody, gore]"))
    with pytest.raises(ConfigError, match="registry no longer matches this index"):
        ValueSelector.load(tmp_path / "idx", embedder=minilm)
    with pytest.raises(ConfigError, match="no longer matches"):
        load_index(tmp_path / "idx", registry=load_registry(source))


def test_cli_build_calibrate_select_evaluate(tmp_path, minilm, capsys):
    index = tmp_path / "toy-index"
    assert main(["values", "build-index", "toyworld", "-o", str(index)]) == 0
    labelled = tmp_path / "toy.jsonl"
    rows = [
        ("a doctor", "colour_equality"),
        ("a teal nurse", None),
        ("a ball", None),
        ("a zombie kite", "no_zombie"),
        ("a bloody orange thief", "no_blood"),
        ("an engineer", "colour_equality"),
        ("a house", None),
    ]
    labelled.write_text(
        "".join(
            json.dumps(
                {"prompt": p, "label": label, "category": "benign" if label is None else "x", "split": "calibration"}
            )
            + "\n"
            for p, label in rows
        )
    )
    assert main(["values", "calibrate", str(index), "--labelled", str(labelled)]) == 0
    assert json.loads((index / METADATA_FILE).read_text())["calibration"]["count"] == len(rows)

    prompts = ["a doctor", "a teal nurse", "a zombie kite", "a box"]
    inputs = {
        "in.txt": lambda p: p.write_text("\n".join(prompts) + "\n"),
        "in.jsonl": lambda p: p.write_text(
            "".join(json.dumps({"prompt": x, "id": i}) + "\n" for i, x in enumerate(prompts))
        ),
        "in.csv": lambda p: p.write_text("id,prompt\n" + "".join(f"{i},{x}\n" for i, x in enumerate(prompts))),
        "in.parquet": lambda p: pq.write_table(pa.table({"prompt": prompts, "id": list(range(4))}), p),
    }
    for name, write in inputs.items():
        write(tmp_path / name)
        out = tmp_path / f"out-{name.split('.')[1]}.parquet"
        assert (
            main(["values", "select", "--index", str(index), "--input", str(tmp_path / name), "--output", str(out)])
            == 0
        )
        table = pq.read_table(out)
        assert table.column("prompt").to_pylist() == prompts, name
        assert table.column("value_id").to_pylist() == ["colour_equality", None, "no_zombie", None], name
        assert table.column("stage").to_pylist()[1:3] == ["explicit-attribute", "keyword"], name
        assert table.schema.field("score").type == pa.float64()
    jsonl_out = tmp_path / "out.jsonl"
    assert (
        main(
            ["values", "select", "--index", str(index), "--input", str(tmp_path / "in.csv"), "--output", str(jsonl_out)]
        )
        == 0
    )
    first = json.loads(jsonl_out.read_text().splitlines()[1])
    assert first["value_id"] is None and first["id"] == 1

    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "values",
                "evaluate",
                "--index",
                str(index),
                "--labelled",
                str(labelled),
                "--split",
                "all",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    numbers = json.loads(report.read_text())
    assert numbers["selector"]["macro_f1"] == 1.0 and numbers["selector"]["benign_fpr"] == 0.0
    assert "keyword_baseline" in numbers and "keyword baseline" in capsys.readouterr().out

    assert (
        main(
            [
                "values",
                "select",
                "--index",
                str(tmp_path / "missing"),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )
    assert "--index " in (err := capsys.readouterr().err) and "missing: no such folder" in err


def test_int8_embedder_is_a_different_identity_close_to_fp32(minilm, index_dir):
    int8 = load_embedder("minilm-int8", reuse=False)
    assert (int8.identity.name, int8.backend) == ("all-MiniLM-L6-v2-int8", "onnxruntime-int8")
    # Quantised vectors are not the float model's: the identity says so even for the same weights file.
    assert int8.identity.weights_sha256 != minilm.identity.weights_sha256
    texts = ["a portrait of a nurse", "a bloody knife on the floor"]
    assert float(np.min(np.sum(int8.embed(texts) * minilm.embed(texts), axis=1))) > 0.85
    with pytest.raises(ConfigError, match="name 'all-MiniLM-L6-v2-int8' differs"):
        ValueSelector.load(index_dir, embedder=int8)


def test_a_prompts_int8_vector_does_not_depend_on_the_prompts_beside_it():
    """Dynamic int8 quantisation scales activations per call: in a padded batch, a prompt's vector
    moved with its neighbours (0.019 per component for "a doctor"), so a file and a one-prompt
    request could select differently. Each prompt is embedded alone, on several threads at once."""
    int8 = load_embedder("minilm-int8", reuse=False)
    prompts = [f"a photo of a doctor number {i} standing in a long hospital corridor at night" for i in range(70)]
    alone = int8.embed(["a doctor"])[0]
    with_neighbours = int8.embed(prompts + ["a doctor"] + prompts)
    np.testing.assert_array_equal(with_neighbours[70], alone)
    np.testing.assert_array_equal(with_neighbours[:70], with_neighbours[71:])
    np.testing.assert_array_equal(int8.embed(prompts[::-1]), with_neighbours[:70][::-1])
    assert int8.embed([]).shape == (0, 384)


def test_transformers_judge_over_a_tiny_local_causal_lm(tmp_path, index_dir, minilm):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from livo.models.tokenizer import build_word_tokenizer
    from livo.values.borderline_judge import TransformersJudge

    words = "image prompt : value principle should an generator apply this to ? answer yes or no . a portrait of nurse".split()
    tokenizer = build_word_tokenizer(words, max_length=64)
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    judge = TransformersJudge(tmp_path / "lm", min_margin=-1e9)  # always picks the best candidate
    selector = ValueSelector.load(index_dir, embedder=minilm, judge=judge)
    selector.judge_band = 1.0
    first = selector.select(["a portrait of a nurse"])[0]
    assert first.stage == "judge" and first.value_id in selector.registry.ids
    assert selector.select(["a portrait of a nurse"]) == [first]  # deterministic
    values = [selector.registry.value(v) for v in ("gender-equality", "no-blood")]
    margins = {v.id: judge.margin("a portrait of a nurse", v) for v in values}
    assert judge.decide("a portrait of a nurse", values) == max(margins, key=margins.get)
    with pytest.raises(ConfigError, match="not a folder"):
        TransformersJudge(tmp_path / "missing")


def test_onnxruntime_backend_gives_pytorchs_vectors_and_identity(tmp_path, monkeypatch, minilm):
    from livo.values.embedders import SentenceTransformerEmbedder

    assert minilm.backend == "onnxruntime"
    monkeypatch.setenv("LIVO_CACHE_DIR", str(tmp_path / "cache"))
    torch_backend = SentenceTransformerEmbedder(str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2")
    onnx_backend = SentenceTransformerEmbedder(
        str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2", backend="onnxruntime"
    )
    assert onnx_backend.identity == torch_backend.identity == minilm.identity
    texts = PROMPTS + ["a much longer prompt about a firefighter carrying a ladder up a burning staircase at night"]
    np.testing.assert_allclose(onnx_backend.embed(texts), torch_backend.embed(texts), atol=1e-5)
    exported = list((tmp_path / "cache" / "onnx").glob("*-fp32-*.onnx"))
    assert len(exported) == 1 and not list((tmp_path / "cache" / "onnx").glob(".export-*"))
    # A cached export ONNX Runtime cannot read (cut by a crash) was a traceback in every later run.
    exported[0].write_bytes(b"garbage")
    again = SentenceTransformerEmbedder(
        str(minilm_path()), spec="minilm", display_name="all-MiniLM-L6-v2", backend="onnxruntime"
    )
    np.testing.assert_allclose(again.embed(texts), torch_backend.embed(texts), atol=1e-5)
    assert exported[0].stat().st_size > 1_000_000
    stamp = exported[0].stat().st_mtime_ns
    SentenceTransformerEmbedder(str(minilm_path()), backend="onnxruntime")  # loads the cached export
    assert exported[0].stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="backend must be one of"):
        SentenceTransformerEmbedder(str(minilm_path()), backend="tensorrt")  # type: ignore[arg-type]


def test_the_cache_folder_expands_home_and_a_damaged_hash_cache_is_rebuilt(tmp_path, monkeypatch):
    """LIVO_CACHE_DIR="~/x" (as an .env file sets it) was a folder named "~" in the working folder;
    a hash cache holding valid JSON of another shape ("null") was a TypeError in every command that
    loaded an embedder."""
    from livo.cache import cache_dir
    from livo.values.embedders import weights_hash

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LIVO_CACHE_DIR", "~/livo-cache")
    assert cache_dir() == tmp_path / "livo-cache"
    (tmp_path / "livo-cache").mkdir()
    (tmp_path / "livo-cache" / "weights-sha256.json").write_text("null")
    first = weights_hash([minilm_path()])
    assert isinstance(json.loads((tmp_path / "livo-cache" / "weights-sha256.json").read_text()), dict)
    assert weights_hash([minilm_path()]) == first


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("thresholds", "high", "field 'thresholds' must be a JSON object, got a string"),
        ("thresholds", {"no-blood": "high"}, "field 'thresholds.no-blood' must be a number, got a string"),
        ("noun_thresholds", [0.3], "field 'noun_thresholds' must be a JSON object, got a list"),
        ("embedder", None, "field 'embedder' must be a JSON object, got null"),
        ("exemplars", {"text": "a"}, "field 'exemplars' must be a list, got a JSON object"),
        ("classifier", "yes", "field 'classifier' must be a JSON object, got a string"),
        ("noun_margin", True, "field 'noun_margin' must be a number, got true/false"),
        ("registry", {"name": "default"}, "field 'registry.sha256' is missing"),
    ],
)
def test_metadata_of_the_wrong_shape_is_an_error_naming_the_field(tmp_path, index_dir, field, value, message):
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    metadata = json.loads((broken / METADATA_FILE).read_text())
    metadata[field] = value
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(InputError, match=f"{METADATA_FILE}: corrupt index metadata: {message}"):
        load_index(broken)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # A typo in a threshold's key: every value it missed got threshold 1.0 and never applied.
        (
            lambda m: m["thresholds"].update({"gender-equalty": m["thresholds"].pop("gender-equality")}),
            "(thresholds: no value 'gender-equalty' in the registry)",
        ),
        (lambda m: m["thresholds"].pop("no-blood"), "(thresholds: no threshold for 'no-blood')"),
        (lambda m: m["noun_thresholds"].update({"no-blood": 0.5}), "(noun_thresholds: no value 'no-blood'"),
        # A type the FAISS file does not hold: a FAISS traceback (ivf), or loaded as if it were (other).
        (
            lambda m: m["index"].update(type="ivf", params={"nprobe": 4}),
            "(index.type 'ivf', but exemplars.faiss holds a flat index)",
        ),
        (lambda m: m["index"].update(type="bogus"), "(index.type 'bogus', but"),
        # A classifier outside the folder was loaded as the index's own.
        (
            lambda m: m.update(
                classifier={
                    "file": "../elsewhere.safetensors",
                    "sha256": "0" * 64,
                    "targets": [],
                    "feature_names": [],
                    "l2": 1.0,
                }
            ),
            "(classifier.file '../elsewhere.safetensors' is not a file name in the index folder)",
        ),
    ],
    ids=[
        "threshold-key-typo",
        "threshold-missing",
        "noun-threshold-of-a-harm-value",
        "ivf-on-flat",
        "unknown-type",
        "classifier-elsewhere",
    ],
)
def test_metadata_edited_by_hand_that_would_change_results_is_refused(tmp_path, index_dir, edit, message):
    broken = tmp_path / "edited"
    shutil.copytree(index_dir, broken)
    metadata = json.loads((broken / METADATA_FILE).read_text())
    edit(metadata)
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(InputError) as error:
        load_index(broken)
    assert str(error.value).startswith(f"{broken / METADATA_FILE}: corrupt index metadata {message}")


def test_an_index_saved_over_while_it_is_read_is_read_again(tmp_path, index_dir):
    # A reader that read metadata.json of one index and exemplars.faiss of the next reported a
    # corrupt index ("rebuild it") that was not: 76 of 1,689 loads under a writer saving in a loop.
    import subprocess
    import sys

    target = tmp_path / "index"
    shutil.copytree(index_dir, target)
    other = tmp_path / "other"
    save_index(build_index(load_registry(builtin_registry_path("default")), load_embedder("minilm-int8")), other)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from livo.values.index import load_index, save_index\n"
                "indexes = [load_index(sys.argv[1]), load_index(sys.argv[2])]\n"
                "print('ready', flush=True)\n"
                "for i in range(120): save_index(indexes[i % 2], sys.argv[3])\n"
            ),
            str(index_dir),
            str(other),
            str(target),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    loads, failures = 0, []
    while writer.poll() is None and loads < 5000:
        try:
            load_index(target)
        except (InputError, FileNotFoundError) as error:
            failures.append(str(error))
        loads += 1
    assert writer.wait(timeout=60) == 0
    assert loads >= 50 and failures == []


def test_select_and_calibrate_report_metadata_of_the_wrong_shape(tmp_path, index_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    metadata = json.loads((broken / METADATA_FILE).read_text())
    metadata["exemplars"][3]["positive"] = "yes"
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    prompts = tmp_path / "in.txt"
    prompts.write_text("a doctor\n")
    select = [
        "values",
        "select",
        "--index",
        str(broken),
        "--input",
        str(prompts),
        "--output",
        str(tmp_path / "o.jsonl"),
    ]
    for args in (select, ["values", "calibrate", str(broken)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"{broken / METADATA_FILE}: corrupt index metadata: field 'exemplars[3].positive' must be" in err
        assert "Traceback" not in err


def test_cli_rejects_rates_and_counts_out_of_range(tmp_path, index_dir, capsys):
    before = (index_dir / METADATA_FILE).read_text()
    for cap in ("2", "-1", "nan"):
        for command in ("calibrate", "fit-classifier"):
            assert main(["values", command, str(index_dir), f"--max-benign-fpr={cap}"]) == 2
            assert f"--max-benign-fpr: must lie in [0, 1], got {float(cap)}" in capsys.readouterr().err
    assert (index_dir / METADATA_FILE).read_text() == before
    assert main(["values", "evaluate", "--index", str(index_dir), "--errors", "-5"]) == 2
    assert "--errors: must be 0 or more, got -5" in capsys.readouterr().err


def test_calibrate_without_benign_rows_says_the_rate_is_not_measured(tmp_path, minilm, capsys):
    index = tmp_path / "toy"
    save_index(build_index(load_registry(builtin_registry_path("toyworld")), minilm), index)
    labelled = tmp_path / "toy.jsonl"
    rows = [("a doctor", "colour_equality"), ("a ball", "none"), ("a bloody kite", "no_blood")]
    labelled.write_text("".join(json.dumps({"prompt": p, "label": label}) + "\n" for p, label in rows))
    assert main(["values", "calibrate", str(index), "--labelled", str(labelled), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "benign FPR n/a (no benign rows: rows with a 'category' starting with 'benign')" in out
    assert json.loads((index / METADATA_FILE).read_text())["calibration"]["benign_count"] == 0
