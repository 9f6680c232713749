"""``livo values ...``: build a value index, calibrate it, select values for a prompt file, and
evaluate selection against the keyword baseline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livo.values.registry import Registry


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    values = subparsers.add_parser(
        "values",
        help="value principles and adaptive value selection",
        description="Build a FAISS index over a value registry's exemplars, calibrate its thresholds on a "
        "labelled prompt set, and select a value principle (or none) for each prompt.",
    )
    sub = values.add_subparsers(dest="values_command", metavar="SUBCOMMAND", required=True)

    build = sub.add_parser("build-index", help="embed a registry's exemplars into a FAISS index folder")
    build.add_argument("registry", help="registry YAML file, or a built-in name: default, toyworld")
    build.add_argument("-o", "--output", required=True, help="index folder to write")
    build.add_argument(
        "--overwrite", action="store_true", help="replace an existing index folder (atomically: never half-written)"
    )
    build.add_argument(
        "--embedder",
        default="minilm-int8",
        help="minilm-int8 (default: MiniLM quantised to int8, about 2x the speed of minilm at the same cross-validated "
        "quality), minilm, st:NAME_OR_PATH, or clip:PIPELINE_DIR[:mean]",
    )
    build.add_argument(
        "--index-type",
        choices=["flat", "hnsw", "ivf"],
        default="flat",
        help="flat (exact, default), hnsw or ivf for large registries",
    )
    build.add_argument(
        "--calibrate",
        action="store_true",
        help="calibrate thresholds right away (on --labelled, default: the shipped set)",
    )
    build.add_argument("--labelled", help="labelled prompt file for --calibrate")
    build.add_argument(
        "--split",
        default=None,
        help="with --calibrate: rows of this split only (default calibration; 'all' for every row)",
    )
    build.add_argument(
        "--training",
        action="append",
        metavar="FILE",
        help="labelled prompts (columns prompt, values) to fit the value classifier on; repeatable. "
        "Default: the prompts shipped for the default registry; other registries get no classifier "
        "without this flag",
    )
    build.add_argument(
        "--no-classifier", action="store_true", help="decide by retrieval thresholds only (no value classifier)"
    )
    build.set_defaults(run=run_build_index, extras=("values",))

    fit = sub.add_parser("fit-classifier", help="fit (or refit) the value classifier of an index on labelled prompts")
    fit.add_argument("index", help="index folder")
    fit.add_argument(
        "--training",
        action="append",
        metavar="FILE",
        help="labelled prompts (columns prompt, values); repeatable (default: the shipped prompts)",
    )
    fit.add_argument(
        "--max-benign-fpr",
        type=float,
        default=0.02,
        help="cap on the cross-validated benign false-positive rate (default 0.02)",
    )
    fit.set_defaults(run=run_fit_classifier, extras=("values",))

    cal = sub.add_parser("calibrate", help="fit retrieval thresholds on a labelled prompt set")
    cal.add_argument("index", help="index folder")
    cal.add_argument(
        "--labelled",
        help="labelled prompts (columns prompt, label[, category, split]); "
        "default: the set shipped for the default registry",
    )
    cal.add_argument(
        "--split", default="calibration", help="rows of this split only (default calibration; 'all' for every row)"
    )
    cal.add_argument(
        "--max-benign-fpr", type=float, default=0.05, help="cap on the benign false-positive rate (default 0.05)"
    )
    cal.set_defaults(run=run_calibrate, extras=("values",))

    select = sub.add_parser("select", help="select a value principle for every prompt of a file")
    select.add_argument("--index", required=True, help="index folder")
    select.add_argument("--input", required=True, help="prompt file (.txt, .jsonl, .csv, .parquet)")
    select.add_argument("--output", required=True, help="output file (.jsonl, .csv, .parquet)")
    select.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    select.add_argument("--column", help="prompt column (default: 'prompt', or the only column)")
    select.add_argument("--registry", help="check the index against this registry file")
    _add_judge_flags(select)
    select.set_defaults(run=run_select, extras=("values",))

    evaluate = sub.add_parser("evaluate", help="precision/recall/F1 of the selector and of the keyword baseline")
    evaluate.add_argument("--index", required=True, help="index folder")
    evaluate.add_argument(
        "--labelled",
        default="promptlog-dev",
        help="labelled prompts (columns prompt, values or label), or a shipped set: promptlog-dev (default), "
        "promptlog-test (the sealed split: score it once, at the end of a piece of work), labelled, holdout",
    )
    evaluate.add_argument("--split", default="all", help="rows of this split only (default: every row)")
    evaluate.add_argument("--errors", type=int, default=20, help="list this many worst errors (default 20)")
    evaluate.add_argument("--json", dest="json_path", help="also write the numbers as JSON here")
    evaluate.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    _add_judge_flags(evaluate)
    evaluate.set_defaults(run=run_evaluate, extras=("values",))


def _add_judge_flags(parser: argparse.ArgumentParser) -> None:
    """The optional judges of borderline decisions (see :func:`_judge`)."""
    parser.add_argument(
        "--judge", help="local causal-LM folder asked about borderline retrieval decisions (off by default)"
    )
    parser.add_argument(
        "--llm-judge",
        metavar="URL",
        help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1, or URL#MODEL) asked about borderline "
        "decisions; its key is read from LIVO_JUDGE_API_KEY (off by default)",
    )
    parser.add_argument("--llm-model", help="model name for --llm-judge")


def _labelled_rows(path: str | None, split: str, registry_ids: list[str]):  # type: ignore[no-untyped-def]
    from livo.errors import InputError
    from livo.values.evaluation import default_labelled_path, load_labelled

    rows = load_labelled(path, None if split == "all" else split)
    if not rows:
        raise InputError(
            f"{path or default_labelled_path()}: no rows in split {split!r} (--split; a file without a "
            "'split' column is all 'test': give --split all to use every row)"
        )
    unknown = sorted({r.label for r in rows if r.label is not None and r.label not in registry_ids})
    if unknown:
        hint = "" if path else " (the shipped set is for the default registry); give --labelled FILE"
        raise InputError(
            f"{path or default_labelled_path()}: labels {unknown} are not values of the index's registry "
            f"{registry_ids}{hint}"
        )
    return rows


def _shipped_labels_fit(registry_ids: list[str]) -> bool:
    """Whether the labelled set shipped with LiVO (written for the default registry) can calibrate
    an index of these values."""
    from livo.values.evaluation import load_labelled

    labels = {row.label for row in load_labelled(None) if row.label is not None}
    return labels <= set(registry_ids)


def _calibrate_into(directory: str, labelled: str | None, split: str, max_benign_fpr: float) -> None:
    from livo.values.calibration import calibrate
    from livo.values.index import update_thresholds
    from livo.values.multilabel import benign_fpr_text
    from livo.values.selector import ValueSelector

    selector = ValueSelector.load(directory)
    rows = _labelled_rows(labelled, split, selector.registry.ids)
    result = calibrate(selector, rows, max_benign_fpr=max_benign_fpr)
    details = result.to_json() | {"labelled": labelled or "builtin", "split": split, "max_benign_fpr": max_benign_fpr}
    update_thresholds(directory, result.thresholds, result.noun_thresholds, result.noun_margin, details)
    thresholds = ", ".join(f"{k} {v:.2f}" for k, v in result.thresholds.items())
    nouns = ", ".join(f"{k} {v:.2f}" for k, v in result.noun_thresholds.items())
    benign = benign_fpr_text(result.benign_fpr, result.benign_count, "rows with a 'category' starting with 'benign'")
    print(f"calibrated on {result.count} prompts: macro-F1 {result.macro_f1:.3f}, {benign}")
    print(f"thresholds: {thresholds}")
    if nouns:
        print(f"person-noun thresholds: {nouns}; person-noun margin {result.noun_margin:.2f}")
    if selector.classifier is not None:
        print(
            "note: this index decides with its value classifier, which has thresholds of its own; the "
            "retrieval thresholds above (and the figures, which are theirs) apply to an index without one "
            "(build-index --no-classifier)"
        )


def _fit_classifier_into(directory: str, training: list[str] | None, max_benign_fpr: float) -> bool:
    """Fits and stores the index's value classifier; False when there are no training prompts."""
    from livo.values.classifier_training import fit_value_classifier, training_rows, training_source
    from livo.values.index import update_classifier
    from livo.values.multilabel import benign_fpr_text
    from livo.values.selector import ValueSelector

    start = time.perf_counter()
    selector = ValueSelector.load(directory)
    rows = training_rows(selector.registry, training)
    if not rows:
        return False
    classifier = fit_value_classifier(selector, rows, max_benign_fpr=max_benign_fpr, source=training_source(training))
    update_classifier(directory, classifier)
    scores = classifier.summary["cross_validated"]
    assert isinstance(scores, dict)
    thresholds = ", ".join(f"{t} {v:.3f}" for t, v in zip(classifier.targets, classifier.thresholds))
    benign = benign_fpr_text(scores["benign_fpr"], sum(row.benign for row in rows))
    print(
        f"value classifier fitted on {len(rows)} labelled prompts in {time.perf_counter() - start:.1f} s: "
        f"cross-validated macro-F1 {scores['macro_f1']:.3f}, {benign} "
        f"(L2 {classifier.l2:g}; thresholds {thresholds})"
    )
    return True


def _distinct_training_files(training: list[str]) -> None:
    """Each --training file exists and is given once (a file given twice counted its rows twice)."""
    from livo.errors import InputError
    from livo.user_paths import input_file

    seen: dict[Path, str] = {}
    for given in training:
        path = input_file(given, flag="--training").resolve()
        if path in seen:
            raise InputError(f"--training {given}: the same file as --training {seen[path]}; give each file once")
        seen[path] = given


def _check_training_files(registry: Registry, training: list[str]) -> None:
    """Refuses training files the classifier cannot learn from before anything is embedded."""
    from livo.values.classifier_training import check_training_rows, training_rows, training_source

    check_training_rows(training_rows(registry, training), registry, training_source(training))


def _judge(path: str | None, llm: str | None = None, llm_model: str | None = None):  # type: ignore[no-untyped-def]
    if path and llm:
        from livo.errors import ConfigError

        raise ConfigError("--judge and --llm-judge: give one judge, not both")
    if llm:
        from livo.values.llm_judge import OpenAICompatibleJudge

        return OpenAICompatibleJudge.from_spec(llm, model=llm_model)
    if llm_model:
        from livo.errors import ConfigError

        raise ConfigError("--llm-model: needs --llm-judge URL")
    if not path:
        return None
    from livo.values.borderline_judge import TransformersJudge

    return TransformersJudge(path)


def run_build_index(args: argparse.Namespace) -> int:
    from livo.errors import InputError
    from livo.user_paths import input_file, output_folder
    from livo.values.embedders import load_embedder
    from livo.values.index import build_index, save_index
    from livo.values.registry import load_registry, resolve_registry_path

    start = time.perf_counter()
    output_folder(args.output, flag="--output", overwrite=args.overwrite)
    if args.labelled:
        input_file(args.labelled, flag="--labelled")
    _distinct_training_files(args.training or [])
    if args.training and args.no_classifier:
        raise InputError("--training and --no-classifier: choose one")
    path = resolve_registry_path(args.registry)
    registry = load_registry(path)
    if args.training:
        _check_training_files(registry, args.training)
    shipped_labels_fit = _shipped_labels_fit(registry.ids)
    for flag, given in (("--labelled", args.labelled), ("--split", args.split)):
        if given is not None and not args.calibrate:
            raise InputError(f"{flag} is read by --calibrate only; add --calibrate, or leave {flag} out")
    if args.split is None:
        args.split = "calibration"
    if args.calibrate and not args.labelled and not shipped_labels_fit:
        raise InputError(
            f"--calibrate: the shipped labelled prompts are for the default registry, not {path}; "
            "give --labelled FILE (columns prompt, label: one of this registry's value ids, or empty for none)"
        )
    if args.calibrate:
        _labelled_rows(args.labelled, args.split, registry.ids)  # refused now, not after the index is built
    embedder = load_embedder(args.embedder)
    index = build_index(registry, embedder, index_type=args.index_type, registry_source=str(path.resolve()))
    save_index(index, args.output, overwrite=args.overwrite)
    print(
        f"indexed {len(index.exemplars)} exemplars of {len(registry.values)} values from {path} with "
        f"{embedder.identity.name} ({embedder.identity.dimension}-d, {args.index_type}) into {args.output} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if not args.no_classifier and not _fit_classifier_into(args.output, args.training, 0.02):
        print("no value classifier: no labelled prompts for this registry (give --training FILE)")
    if args.calibrate:
        _calibrate_into(args.output, args.labelled, args.split, 0.05)
    elif shipped_labels_fit:
        print(f"thresholds are defaults; calibrate with: livo values calibrate {args.output}")
    else:
        print(
            f"thresholds are defaults; to calibrate, label prompts with this registry's value ids "
            f"(columns prompt, label) and run: livo values calibrate {args.output} --labelled FILE"
        )
    return 0


def run_fit_classifier(args: argparse.Namespace) -> int:
    from livo.errors import InputError
    from livo.user_paths import input_folder

    input_folder(args.index, flag="index")
    _distinct_training_files(args.training or [])
    _check_benign_fpr_cap(args.max_benign_fpr)
    if not _fit_classifier_into(args.index, args.training, args.max_benign_fpr):
        raise InputError(
            f"{args.index}: no labelled prompts for this index's registry; give --training FILE "
            "(columns prompt, values: a list of the registry's value ids)"
        )
    return 0


def _check_benign_fpr_cap(cap: float) -> None:
    """``--max-benign-fpr`` is a rate: outside [0, 1] (or nan, which no rate is below) the cap would
    silently accept every setting or none."""
    from livo.errors import InputError

    if not 0.0 <= cap <= 1.0:  # also false for nan
        raise InputError(f"--max-benign-fpr: must lie in [0, 1], got {cap}")


def run_calibrate(args: argparse.Namespace) -> int:
    from livo.user_paths import input_file, input_folder

    input_folder(args.index, flag="index")
    _check_benign_fpr_cap(args.max_benign_fpr)
    if args.labelled:
        input_file(args.labelled, flag="--labelled")
    _calibrate_into(args.index, args.labelled, args.split, args.max_benign_fpr)
    return 0


def run_select(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from livo.data.io import INPUT_SUFFIXES, OUTPUT_SUFFIXES, check_writable, read_prompt_table, write_table
    from livo.user_paths import input_file, input_folder, output_file
    from livo.values.registry import load_registry
    from livo.values.selector import ValueSelector

    # Every path and the prompt column first: a mistake costs no model load.
    input_folder(args.index, flag="--index")
    input_file(args.input, flag="--input", suffixes=INPUT_SUFFIXES)
    output_file(args.output, flag="--output", overwrite=args.overwrite, suffixes=OUTPUT_SUFFIXES)
    table, prompts = read_prompt_table(args.input, args.column)
    check_writable(table.schema, args.output)
    registry = load_registry(args.registry) if args.registry else None
    judge = _judge(args.judge, args.llm_judge, args.llm_model)
    selector = ValueSelector.load(args.index, registry=registry, judge=judge)
    texts = [p if p is not None else "" for p in prompts.to_pylist()]
    start = time.perf_counter()
    selections = selector.select(texts)
    seconds = time.perf_counter() - start
    columns = {
        "value_id": pa.array([s.value_id for s in selections], pa.string()),
        "score": pa.array([s.score for s in selections], pa.float64()),
        "stage": pa.array([s.stage for s in selections], pa.string()),
        "value_ids": pa.array([s.value_ids for s in selections], pa.list_(pa.string())),
        "value_scores": pa.array([[v.score for v in s.values] for s in selections], pa.list_(pa.float64())),
        "reasons": pa.array([s.reasons for s in selections], pa.list_(pa.string())),
    }
    for name, column in columns.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, column)
    write_table(table, args.output)
    counts: dict[str, int] = {}
    for s in selections:
        for key in s.value_ids or ["none"]:
            counts[key] = counts.get(key, 0) + 1
    several = sum(1 for s in selections if len(s.value_ids) > 1)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    rate = len(texts) / seconds if seconds > 0 else float("inf")
    empty = sum(1 for text in texts if not text.strip())
    print(
        f"selected values for {len(texts):,} prompts in {seconds:.2f} s ({rate:,.0f}/s): {summary}; "
        f"{several:,} prompts with several values" + (f"; {empty:,} empty or missing prompts got none" if empty else "")
    )
    return 0


def _training_overlap(summary: dict[str, object], prompts: list[str]) -> str:
    """A note when the classifier was fitted on some of the evaluated prompts (scores optimistic)."""
    from livo.values.classifier_training import prompt_fingerprint

    seen = set(summary.get("training_prompts") or [])  # type: ignore[call-overload]
    overlap = sum(prompt_fingerprint(p) in seen for p in prompts)
    cv = summary.get("cross_validated") or {}
    assert isinstance(cv, dict)
    if not overlap:
        return "  none of these prompts was used to fit the value classifier"
    return (
        f"  note: the value classifier was fitted on {overlap:,} of these {len(prompts):,} prompts, so these scores "
        f"are optimistic; its cross-validated estimate is macro-F1 {cv.get('macro_f1')}, benign FPR "
        f"{cv.get('benign_fpr')}"
    )


SHIPPED_SETS = ("promptlog-dev", "promptlog-test", "labelled", "holdout")


def _evaluation_path(labelled: str):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from livo.user_paths import input_file
    from livo.values.classifier_training import shipped_training_files
    from livo.values.multilabel import promptlog_path

    if labelled in SHIPPED_SETS:
        data = shipped_training_files()[0].parent
        path = {
            "promptlog-dev": promptlog_path("dev"),
            "promptlog-test": promptlog_path("test"),
            "labelled": data / "labelled_prompts.jsonl",
            "holdout": data / "holdout_prompts.jsonl",
        }[labelled]
    else:
        path = Path(input_file(labelled, flag="--labelled"))
    return path


def _evaluation_rows(path, labelled: str, split: str, registry_ids: list[str]):  # type: ignore[no-untyped-def]
    from livo.errors import InputError
    from livo.values.multilabel import load_multilabel

    rows = load_multilabel(path, None if split == "all" else split)
    if not rows:
        raise InputError(f"{path}: no rows in split {split!r}")
    unknown = sorted({v for r in rows for v in r.values if v not in registry_ids})
    if unknown:
        hint = (
            " (the shipped sets are for the default registry); give --labelled FILE" if labelled in SHIPPED_SETS else ""
        )
        raise InputError(f"{path}: values {unknown} are not values of the index's registry {registry_ids}{hint}")
    return rows


def run_evaluate(args: argparse.Namespace) -> int:
    from livo.errors import InputError
    from livo.user_paths import input_folder, output_file
    from livo.values.evaluation import KeywordBaseline
    from livo.values.multilabel import format_multilabel, score_multilabel
    from livo.values.selector import ValueSelector

    input_folder(args.index, flag="--index")
    if args.errors < 0:
        raise InputError(f"--errors: must be 0 or more, got {args.errors}")
    path = _evaluation_path(args.labelled)
    if args.json_path:
        output_file(args.json_path, flag="--json", overwrite=args.overwrite)
    selector = ValueSelector.load(args.index, judge=_judge(args.judge, args.llm_judge, args.llm_model))
    ids = selector.registry.ids
    rows = _evaluation_rows(path, args.labelled, args.split, ids)
    prompts = [r.prompt for r in rows]
    start = time.perf_counter()
    selections = selector.select(prompts)
    seconds = time.perf_counter() - start
    ours = score_multilabel(rows, selections, ids, worst=args.errors)
    baseline = score_multilabel(rows, KeywordBaseline(selector.registry).select(prompts), ids, worst=0)
    decision = "value classifier" if selector.classifier is not None else "retrieval thresholds"
    name = f"{args.labelled}" + ("" if args.split == "all" else f", split {args.split}")
    print(
        format_multilabel(f"selector ({selector.embedder.identity.name}, {decision}; {name})", ours, ids, args.errors)
    )
    if selector.classifier is not None:
        print(_training_overlap(selector.classifier.summary, prompts))
    print(format_multilabel(f"keyword baseline ({name})", baseline, ids, errors=0))
    print(f"selection took {seconds:.2f} s for {len(rows):,} prompts ({len(rows) / max(seconds, 1e-9):,.0f}/s)")
    if args.json_path:
        from pathlib import Path

        from livo.values.index import write_json_atomic

        write_json_atomic(
            Path(args.json_path),
            {
                "labelled": args.labelled,
                "split": args.split,
                "selector": ours.to_json(),
                "keyword_baseline": baseline.to_json(),
            },
        )
    return 0
