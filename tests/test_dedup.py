"""Deduplication through the built extension: API, CLI on every input format, and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livo.data import DedupConfig, dedup, dedup_file, lsh_params, normalize
from livo.data.synthetic import labelled_corpus
from livo.errors import InputError, InvalidParameterError, InvalidUtf8Error

BASE = (
    "A portrait of a smiling doctor in a hospital corridor at night, oil painting, warm light, "
    "detailed brushwork, muted green walls"
)
PROMPTS = [
    BASE,
    BASE.lower().replace(",", ""),  # format
    BASE.replace("A portrait", "Ａ portrait"),  # unicode (full-width A)
    BASE.replace("green walls", "green wall"),  # light edit: Jaccard 0.99, far above 0.8
    "a red fox crossing a stone bridge at dawn, watercolour",
    "!!!",
    "a red fox crossing a stone bridge at dawn, watercolour",
]


def pair_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering against the true one."""

    def pairs(labels: np.ndarray) -> set[tuple[int, int]]:
        out = set()
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            out.update((int(a), int(b)) for i, a in enumerate(members) for b in members[i + 1 :])
        return out

    p, t = pairs(predicted), pairs(truth)
    return len(p & t) / max(len(p), 1), len(p & t) / max(len(t), 1)


def test_clusters_formatting_unicode_and_light_edits_with_first_occurrence_as_representative():
    result = dedup(PROMPTS)
    assert result.cluster_id.tolist() == [0, 0, 0, 0, 4, 5, 4]
    assert result.keep.tolist() == [True, False, False, False, True, True, False]
    assert result.exact_duplicates == 3  # rows 1, 2 normalise to row 0; row 6 equals row 4
    assert result.near_duplicates == 1
    assert result.clusters == 3
    assert result.empty_rows.tolist() == [5]


def test_empty_prompts_are_reported_and_never_merged():
    result = dedup(["...", "a cat", "!!!", ""])
    assert result.empty_rows.tolist() == [0, 2, 3]
    assert result.cluster_id.tolist() == [0, 1, 2, 3]


def test_non_latin_prompts_do_not_collapse_to_empty():
    texts = ["एक मुस्कुराता हुआ डॉक्टर", "一位微笑的医生", "улыбающийся врач", "طبيب يبتسم"]
    result = dedup(texts)
    assert len(result.empty_rows) == 0
    assert result.cluster_id.tolist() == [0, 1, 2, 3]
    assert normalize("Улыбающийся ВРАЧ!") == "улыбающийся врач"


def test_near_duplicates_sharing_a_bucket_end_in_one_cluster_on_templated_prompts():
    """Within an LSH bucket each member was paired with the first and its predecessor only: one
    unrelated member between two duplicates hid them from each other (templated prompts: 344
    clusters where the verified pairs make 221). Every verified pair that shares a bucket must be
    joined now."""
    import random

    from livo import _native

    rng = random.Random(1)
    words = [
        "tired happy young old smiling serious tall short busy calm".split(),
        "doctor nurse teacher pilot chef farmer lawyer artist baker judge".split(),
        ["waiting for a bus", "reading a book", "drinking coffee", "walking a dog", "looking at the sky"],
        ["city park", "train station", "old library", "quiet street", "busy market"],
    ]
    texts = list(
        dict.fromkeys(
            "a photo of a {} {} {} in the {} at dawn, high detail".format(*(rng.choice(w) for w in words))
            for _ in range(700)
        )
    )
    clusters = np.asarray(dedup(texts).cluster_id)
    i, j = np.triu_indices(len(texts), 1)
    column = pa.array(texts)
    verified = np.asarray(_native.dedup_verify_pairs(column.take(pa.array(i)), column.take(pa.array(j))))
    features = _native.dedup_block_features(column)
    bands = np.asarray(features["band_hashes"]).reshape(len(texts), features["bands"])
    i, j = i[verified], j[verified]
    shared = (bands[i] == bands[j]).any(axis=1)
    assert shared.sum() > 100
    assert (clusters[i[shared]] == clusters[j[shared]]).all()


def test_emoji_variation_selectors_and_keycaps_are_invisible():
    """U+FE0F survived normalisation: "❤️" and "❤" differed, while "❤️" and "☀️" both became the
    selector alone and were merged."""
    assert normalize("a red heart \u2764\ufe0f") == normalize("a red heart \u2764") == "a red heart"
    result = dedup(["a red heart \u2764\ufe0f", "a red heart \u2764", "\u2764\ufe0f", "\u2600\ufe0f", "#\ufe0f\u20e3"])
    assert list(result.cluster_id) == [0, 0, 2, 3, 4]


def test_arrow_input_gives_the_same_clusters_as_a_list():
    corpus = labelled_corpus(2_000, seed=3)
    from_list = dedup(corpus.texts)
    for array in (
        pa.array(corpus.texts),
        pa.array(corpus.texts, pa.large_string()),
        pa.chunked_array([corpus.texts[:700], corpus.texts[700:]]),
    ):
        assert np.array_equal(dedup(array).cluster_id, from_list.cluster_id)


def test_nulls_in_arrow_input_count_as_empty():
    result = dedup(pa.array(["a cat on a mat", None, "a cat on a mat"]))
    assert result.empty_rows.tolist() == [1]
    assert result.cluster_id.tolist() == [0, 1, 0]


def test_result_is_identical_for_one_and_two_threads():
    corpus = labelled_corpus(5_000, seed=4)
    one = dedup(corpus.texts, DedupConfig(threads=1))
    two = dedup(corpus.texts, DedupConfig(threads=2))
    assert np.array_equal(one.cluster_id, two.cluster_id)
    assert np.array_equal(one.keep, two.keep)


def test_a_forked_child_deduplicates_and_writes_and_verifies_shards(tmp_path):
    """The parent's rayon pool has no threads in a forked child (multiprocessing's default start on
    Linux): the child's engine calls must finish, with the parent's results."""
    code = f"""
import os
import numpy as np
import pyarrow as pa
from livo import _native
from livo.data import dedup
from livo.data.shards import Manifest, verify_shards, write_shards
from livo.data.synthetic import labelled_corpus

texts = labelled_corpus(5_000, seed=6).texts
column = pa.array(texts)
parent = dedup(texts).cluster_id
table = pa.table({{"record_id": [str(i) for i in range(len(texts))], "prompt": texts, "cluster_id": parent}})
parent_bands = _native.dedup_block_features(column)["bands"]
write_shards({str(tmp_path / "parent")!r}, table)
pid = os.fork()
if pid == 0:
    same = np.array_equal(dedup(texts).cluster_id, parent)
    same &= np.array_equal(_native.dedup_block_features(column)["bands"], parent_bands)
    write_shards({str(tmp_path / "child")!r}, table)
    report = verify_shards({str(tmp_path / "child")!r})
    same &= report.ok and report.rows == len(texts)
    os._exit(0 if same else 3)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", code], timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_recovers_known_clusters_of_a_labelled_corpus():
    corpus = labelled_corpus(5_000, seed=5)
    result = dedup(corpus.texts)
    precision, recall = pair_scores(result.cluster_id, np.array(corpus.cluster))
    assert precision > 0.99
    assert recall > 0.9


def test_default_banding_recovers_the_pairs_equal_weight_banding_misses():
    corpus = labelled_corpus(20_000, seed=7)
    truth = np.array(corpus.cluster)
    default = dedup(corpus.texts)
    equal_weights = dedup(corpus.texts, DedupConfig(bands=9, num_perm=117))  # 9 × 13, the equal-weight choice
    assert (default.bands, default.rows_per_band) == (16, 8)
    recall_default = pair_scores(default.cluster_id, truth)[1]
    recall_equal = pair_scores(equal_weights.cluster_id, truth)[1]
    assert recall_default > 0.99 and recall_default > recall_equal + 0.03, (recall_default, recall_equal)


def test_the_dedup_command_imports_only_its_own_module(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\nA red fox!\n", encoding="utf-8")
    probe = (
        "import sys; from livo.cli import main; "
        f"main(['dedup', {str(prompts)!r}, '-o', {str(tmp_path / 'out.parquet')!r}]); "
        "print(sorted(m for m in sys.modules if m.startswith(('livo.toyworld', 'livo.serve', 'livo.values', "
        "'livo.train', 'livo.eval', 'livo.dataset', 'livo.demo', 'torch', 'ray', 'deepspeed'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_verification_removes_false_candidates():
    corpus = labelled_corpus(3_000, seed=6)
    loose = DedupConfig(threshold=0.5, bands=64, num_perm=128)
    verified = dedup(corpus.texts, loose)
    unverified = dedup(corpus.texts, DedupConfig(**{**loose.__dict__, "verify": False}))
    assert verified.verified_pairs < verified.candidate_pairs
    assert verified.clusters >= unverified.clusters


def test_lsh_params_follow_threshold():
    assert lsh_params(0.8, 128) == (16, 8)  # verified: banding for recall
    assert lsh_params(0.8, 128, verify=False) == (9, 13)  # LSH alone decides: equal error weights
    bands_low, rows_low = lsh_params(0.5, 128)
    bands_high, rows_high = lsh_params(0.95, 128)
    assert rows_high > rows_low


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DedupConfig(threshold=0.0), "threshold"),
        (DedupConfig(threshold=1.5), "threshold"),
        (DedupConfig(num_perm=100, bands=7), "not a multiple"),
        (DedupConfig(ngram=0), "ngram"),
        (DedupConfig(threads=0), "threads"),
    ],
)
def test_invalid_parameters_raise_naming_the_parameter(config, message):
    with pytest.raises(InvalidParameterError, match=message):
        dedup(["a"], config)


def test_wrong_input_types_are_type_errors():
    with pytest.raises(TypeError, match="texts"):
        dedup(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="string"):
        dedup(pa.array([1, 2, 3]))


# --- files and CLI -------------------------------------------------------------------------


def write_inputs(tmp_path):
    rows = [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS)]
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    pl.DataFrame(rows).write_csv(tmp_path / "p.csv")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    for name, codec in (("p.jsonl", "gzip"), ("p.txt", "zstd"), ("p.csv", "bz2")):
        extension = {"gzip": ".gz", "zstd": ".zst", "bz2": ".bz2"}[codec]
        with pa.output_stream(tmp_path / (name + extension), compression=codec) as stream:
            stream.write((tmp_path / name).read_bytes())


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet", "jsonl.gz", "txt.zst", "csv.bz2"])
def test_cli_on_every_input_format_keeps_columns_and_adds_clusters(tmp_path, fmt):
    write_inputs(tmp_path)
    out = tmp_path / f"out.{'parquet' if fmt != 'parquet' else 'jsonl'}"
    proc = subprocess.run(
        [sys.executable, "-m", "livo.cli", "dedup", str(tmp_path / f"p.{fmt}"), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "exact duplicates 3" in proc.stdout and "near duplicates 1" in proc.stdout
    assert "empty after normalisation" in proc.stderr and "rows 6" in proc.stderr
    frame = pl.read_parquet(out) if out.suffix == ".parquet" else pl.read_ndjson(out)
    assert frame["prompt"].to_list() == PROMPTS
    if not fmt.startswith("txt"):
        assert frame["id"].to_list() == list(range(len(PROMPTS)))
    assert frame["cluster_id"].to_list() == [0, 0, 0, 0, 4, 5, 4]
    assert frame["keep"].to_list() == [True, False, False, False, True, True, False]


def test_csv_columns_keep_their_text_unless_it_reads_back_as_numbers(tmp_path):
    """A type guess turned an id "007" into 7 and a zip "01234" into 1234 in the output, and failed
    on an integer wider than 64 bits."""
    path = tmp_path / "p.csv"
    path.write_text(
        "id,zip,big,score,prompt\n007,01234,123456789012345678901234567890,0.5,a doctor\n8,98765,1,1.25,a nurse\n"
    )
    dedup_file(path, tmp_path / "out.csv")
    dedup_file(path, tmp_path / "out.parquet")
    assert (
        (tmp_path / "out.csv").read_text().splitlines()[1].startswith("007,01234,123456789012345678901234567890,0.5,")
    )
    frame = pl.read_parquet(tmp_path / "out.parquet")
    assert frame["id"].to_list() == ["007", "8"] and frame["zip"].to_list() == ["01234", "98765"]
    assert frame["score"].to_list() == [0.5, 1.25]  # numbers that read back as written stay numbers


def test_keep_only_writes_representatives(tmp_path):
    write_inputs(tmp_path)
    out = tmp_path / "kept.csv"
    dedup_file(tmp_path / "p.csv", out, keep_only=True)
    assert pl.read_csv(out)["id"].to_list() == [0, 4, 5]


def test_invalid_utf8_in_a_text_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a doctor\na nurse\nbroken \xc3\x28 text\n")
    with pytest.raises(InvalidUtf8Error, match=r"bad\.txt: line 3"):
        dedup_file(path, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()  # the command's one line and exit 2: test_errors.py


@pytest.mark.parametrize("compression", ["", ".gz"])
def test_text_formats_written_by_other_tools_read_or_fail_naming_the_file(tmp_path, compression):
    """UTF-16 (Windows' "Unicode text") is named instead of a polars panic; a JSON Lines file with a
    UTF-8 BOM reads like one without; a broken JSON line is named by its number."""
    import gzip

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / (name + compression)
        path.write_bytes(gzip.compress(data) if compression else data)
        return path

    for name in ("u16.csv", "u16.jsonl"):
        body = "prompt\na doctor\n" if name.endswith("csv") else '{"prompt": "a doctor"}\n'
        with pytest.raises(InputError, match=r"u16\.(csv|jsonl)(\.gz)?: not UTF-8 text \(it starts with a UTF-16 byte"):
            dedup_file(write(name, body.encode("utf-16")), tmp_path / "o.parquet")
    with pytest.raises(InputError, match=r"nul\.csv(\.gz)?: not UTF-8 text \(it holds NUL bytes"):
        dedup_file(write("nul.csv", b"prompt\na\x00doctor\n"), tmp_path / "o.parquet")
    result = dedup_file(
        write("bom.jsonl", b'\xef\xbb\xbf{"prompt": "a doctor"}\n{"prompt": "a kite"}\n'), tmp_path / "b.parquet"
    )
    assert result.rows == 2 and pq.read_table(tmp_path / "b.parquet")["prompt"].to_pylist() == ["a doctor", "a kite"]
    lines = [f'{{"prompt": "p{i}"}}' for i in range(1000)]
    lines[500] = '{"prompt": "broken'
    broken = write("broken.jsonl", ("\n".join(lines) + "\n").encode())
    with pytest.raises(InputError, match=r"broken\.jsonl(\.gz)?: cannot be read as jsonl: line 501 is not valid JSON"):
        dedup_file(broken, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()
    # Valid JSON of types one column cannot hold: polars' error named neither line nor key.
    lines[500] = '{"prompt": "p500", "id": 1}'
    lines[700] = '{"prompt": "p700", "id": {"k": 1}}'
    mixed = write("mixed.jsonl", ("\n".join(lines) + "\n").encode())
    with pytest.raises(
        InputError,
        match=r"mixed\.jsonl(\.gz)?: cannot be read as jsonl: line 701: 'id' is an object where line 501 has a number; a column holds one type$",
    ):
        dedup_file(mixed, tmp_path / "o.parquet")
    lines[700] = "[1, 2]"
    with pytest.raises(InputError, match=r"line 701 is not a JSON object \(a row of JSON Lines is one\)"):
        dedup_file(write("array.jsonl", ("\n".join(lines) + "\n").encode()), tmp_path / "o.parquet")


@pytest.mark.parametrize("compression", ["", ".gz"])
def test_blank_lines_of_a_csv_are_no_rows(tmp_path, compression):
    """polars made each blank line a row of nulls: a file ending in two newlines had a prompt more
    (pandas and Python's csv skip them). A line of separators only is a row; a blank line inside
    quotes is text."""
    import gzip

    from livo.data.io import read_prompt_table

    data = b'prompt,id\r\na doctor,1\r\n\r\n,\r\n"two\r\n\r\nlines",3\r\na kite,4\r\n\r\n\r\n'
    path = tmp_path / f"p.csv{compression}"
    path.write_bytes(gzip.compress(data) if compression else data)
    table, prompts = read_prompt_table(path)
    assert prompts.to_pylist() == ["a doctor", None, "two\r\n\r\nlines", "a kite"]
    assert table.column("id").to_pylist() == [1, None, 3, 4]
    assert dedup_file(path, tmp_path / "o.parquet").rows == 4


@pytest.mark.parametrize("compression", ["", ".gz"])
def test_a_json_prompt_that_is_not_a_string_is_named_by_its_line(tmp_path, compression):
    """polars reads a JSON column of strings and numbers as text: {"prompt": 42} became the prompt
    "42", a list its JSON text. The prompt column must hold strings (or null); other columns may mix."""
    import gzip

    def write(name: str, rows: list[object]) -> Path:
        data = ("\n".join(json.dumps(row) for row in rows) + "\n").encode()
        path = tmp_path / (name + compression)
        path.write_bytes(gzip.compress(data) if compression else data)
        return path

    good = [{"prompt": "a doctor", "n": 1}, {"prompt": None, "n": "two"}, {"prompt": "a kite", "n": [3]}]
    assert dedup_file(write("good.jsonl", good), tmp_path / "o.parquet").rows == 3
    for value, described in [
        (42, "a number (42)"),
        (["a doctor", "a nurse"], 'a list (["a doctor", "a nurse"])'),
        ({"text": "a doctor"}, 'an object ({"text": "a doctor"})'),
        (True, "a boolean (true)"),
    ]:
        rows = [{"prompt": "a doctor"}, {"prompt": "a kite"}, {"prompt": value}, {"prompt": "a box"}]
        stray = write("stray.jsonl", rows)
        with pytest.raises(InputError) as error:
            dedup_file(stray, tmp_path / "o.parquet")
        assert str(error.value) == f"{stray}: line 3: 'prompt' is {described}, not a string"
    stray = write("column.jsonl", [{"text": "a doctor"}, {"text": 7}])
    with pytest.raises(InputError, match=r"column\.jsonl(\.gz)?: line 2: 'text' is a number \(7\), not a string"):
        dedup_file(stray, tmp_path / "o.parquet", column="text")


def test_missing_column_names_the_file_and_the_columns(tmp_path):
    write_inputs(tmp_path)
    with pytest.raises(InputError, match=r"p\.csv: no column 'text'; columns are \['id', 'prompt'\]"):
        dedup_file(tmp_path / "p.csv", tmp_path / "o.parquet", column="text")


def test_non_string_column_is_rejected(tmp_path):
    write_inputs(tmp_path)
    with pytest.raises(InputError, match="column 'id' has type int64"):
        dedup_file(tmp_path / "p.parquet", tmp_path / "o.parquet", column="id")


def test_a_categorical_prompt_column_is_read_as_its_strings(tmp_path):
    """pandas' category and polars' Categorical reach Parquet as dictionary-encoded columns."""
    prompts = ["a red fox", "a red fox", None, "a blue car"]
    pl.DataFrame({"prompt": prompts}, schema={"prompt": pl.Categorical}).write_parquet(tmp_path / "cat.parquet")
    pq.write_table(pa.table({"prompt": pa.array(prompts).dictionary_encode()}), tmp_path / "dict.parquet")
    for name in ("cat.parquet", "dict.parquet"):
        dedup_file(tmp_path / name, tmp_path / f"{name}.jsonl")
        out = pl.read_ndjson(tmp_path / f"{name}.jsonl")
        assert out["prompt"].to_list() == prompts
        assert out["cluster_id"].to_list() == [0, 0, 2, 3] and out["keep"].to_list() == [True, False, True, True]
    codes = pa.table({"prompt": pa.DictionaryArray.from_arrays(pa.array([0, 1]), pa.array([1, 2]))})
    pq.write_table(codes, tmp_path / "codes.parquet")
    with pytest.raises(InputError, match="column 'prompt' has type int64, expected strings"):
        dedup_file(tmp_path / "codes.parquet", tmp_path / "o.parquet")


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        dedup_file(tmp_path / "nope.txt", tmp_path / "o.parquet")
    (tmp_path / "p.xlsx").write_text("x")
    with pytest.raises(InputError, match="unsupported file extension '.xlsx'"):
        dedup_file(tmp_path / "p.xlsx", tmp_path / "o.parquet")


def test_corrupt_parquet_is_reported_not_half_read(tmp_path):
    write_inputs(tmp_path)
    data = (tmp_path / "p.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.parquet: cannot be read as parquet"):
        dedup_file(tmp_path / "cut.parquet", tmp_path / "o.parquet")


def test_bundled_sample_corpus_runs_through_the_cli(tmp_path):
    from importlib.resources import files

    sample = files("livo.data") / "samples" / "prompts.txt"
    out = tmp_path / "sample.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "livo.cli", "dedup", str(sample), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    table = pq.read_table(out)
    assert table.num_rows > 1000
    assert 0 < sum(table.column("keep").to_pylist()) < table.num_rows


def test_cli_refuses_several_inputs_without_ray_and_a_file_output_with_it(tmp_path, capsys):
    """Both are checked before any work (and before Ray starts), naming what to change."""
    from livo.cli import main

    write_inputs(tmp_path)
    txt, jsonl = str(tmp_path / "p.txt"), str(tmp_path / "p.jsonl")
    assert main(["dedup", txt, jsonl, "-o", str(tmp_path / "o.parquet")]) == 2
    assert "2 inputs given: without --ray" in capsys.readouterr().err
    assert main(["dedup", "--ray", txt, "-o", str(tmp_path / "o.parquet")]) == 2
    assert "with --ray the output is a folder" in capsys.readouterr().err
    assert main(["dedup", "--ray", str(tmp_path / "none*.txt"), "-o", str(tmp_path / "out")]) == 2
    assert "none*.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["dedup", "--ray", txt, "-o", str(tmp_path / "out"), "--piece-size", "lots"])
    assert usage.value.code == 2 and "argument --piece-size: size 'lots'" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "data", "output", "message"),
    [
        # polars read a lone surrogate escape as NUL: "x \ud800 y" and "x \udbff y" became one prompt.
        (
            "s.jsonl",
            b'{"prompt": "ok \\ud83d\\ude00"}\n{"prompt": "x \\ud800 y"}\n{"prompt": "x \\udbff y"}\n',
            "o.jsonl",
            r"s\.jsonl: line 2: \\ud800 is half of a UTF-16 surrogate pair",
        ),
        # Read as one header line: no rows, and exit 0.
        ("m.csv", b"prompt,id\ra doctor,1\ra fox,2\r", "o.jsonl", r"m\.csv: its lines end in CR alone"),
        # Each line became one prompt, its id included.
        (
            "sc.csv",
            b"id;prompt\r\n1;a doctor\r\n",
            "o.jsonl",
            r"one column named 'id;prompt': the file looks separated by ';'",
        ),
        # Letters and NULs, without a word.
        (
            "u.txt",
            "a doctor\na fox\n".encode("utf-16-le"),
            "o.jsonl",
            r"u\.txt: not UTF-8 text \(every other byte is NUL",
        ),
    ],
)
def test_files_other_tools_write_are_refused_naming_what_is_wrong(tmp_path, name, data, output, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=message):
        dedup_file(tmp_path / name, tmp_path / output)
    assert not (tmp_path / output).exists()


def test_bytes_columns_are_refused_before_the_work_and_nan_text_stays_text(tmp_path):
    """A Hugging Face image column in a Parquet file made the .jsonl writer panic after the whole
    dedup; "NaN" and "inf" in a CSV column were typed as floats and written to JSON Lines as null."""
    pq.write_table(pa.table({"prompt": ["a", "b"], "png": [b"\x89PNG", b"\x00"]}), tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"o\.jsonl: column 'png' holds bytes \(binary\), which a \.jsonl file cannot"):
        dedup_file(tmp_path / "b.parquet", tmp_path / "o.jsonl")
    dedup_file(tmp_path / "b.parquet", tmp_path / "o.parquet")
    assert pq.read_table(tmp_path / "o.parquet")["png"].to_pylist() == [b"\x89PNG", b"\x00"]
    (tmp_path / "n.csv").write_text("prompt,score\na,NaN\nb,inf\nc,1.5\n")
    dedup_file(tmp_path / "n.csv", tmp_path / "n.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert [row["score"] for row in rows] == ["NaN", "inf", "1.5"]
