"""``livo values ...``: build a value index, calibrate it, select values for a prompt file, and
evaluate selection against the keyword baseline."""

from __future__ import annotations

import argparse
import time


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
        "--embedder", default="minilm", help="minilm (default), st:NAME_OR_PATH, or clip:PIPELINE_DIR[:mean]"
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
    build.set_defaults(run=run_build_index, extras=("values",))

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
    select.add_argument(
        "--judge", help="local causal-LM folder asked about borderline retrieval decisions (off by default)"
    )
    select.set_defaults(run=run_select, extras=("values",))

    evaluate = sub.add_parser("evaluate", help="precision/recall/F1 of the selector and of the keyword baseline")
    evaluate.add_argument("--index", required=True, help="index folder")
    evaluate.add_argument("--labelled", help="labelled prompts (default: the shipped set)")
    evaluate.add_argument("--split", default="test", help="rows of this split only (default test; 'all' for every row)")
    evaluate.add_argument("--json", dest="json_path", help="also write the numbers as JSON here")
    evaluate.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    evaluate.add_argument(
        "--judge", help="local causal-LM folder asked about borderline retrieval decisions (off by default)"
    )
    evaluate.set_defaults(run=run_evaluate, extras=("values",))


def _labelled_rows(path: str | None, split: str, registry_ids: list[str]):  # type: ignore[no-untyped-def]
    from livo.errors import InputError
    from livo.values.evaluation import default_labelled_path, load_labelled

    rows = load_labelled(path, None if split == "all" else split)
    if not rows:
        raise InputError(f"{path or default_labelled_path()}: no rows in split {split!r}")
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
    from livo.values.selector import ValueSelector

    selector = ValueSelector.load(directory)
    rows = _labelled_rows(labelled, split, selector.registry.ids)
    result = calibrate(selector, rows, max_benign_fpr=max_benign_fpr)
    details = result.to_json() | {"labelled": labelled or "builtin", "split": split, "max_benign_fpr": max_benign_fpr}
    update_thresholds(directory, result.thresholds, result.noun_thresholds, result.noun_margin, details)
    thresholds = ", ".join(f"{k} {v:.2f}" for k, v in result.thresholds.items())
    nouns = ", ".join(f"{k} {v:.2f}" for k, v in result.noun_thresholds.items())
    print(f"calibrated on {result.count} prompts: macro-F1 {result.macro_f1:.3f}, benign FPR {result.benign_fpr:.3f}")
    print(f"thresholds: {thresholds}")
    if nouns:
        print(f"person-noun thresholds: {nouns}; person-noun margin {result.noun_margin:.2f}")


def _judge(path: str | None):  # type: ignore[no-untyped-def]
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
    path = resolve_registry_path(args.registry)
    registry = load_registry(path)
    shipped_labels_fit = _shipped_labels_fit(registry.ids)
    if args.calibrate and not args.labelled and not shipped_labels_fit:
        raise InputError(
            f"--calibrate: the shipped labelled prompts are for the default registry, not {path}; "
            "give --labelled FILE (columns prompt, label: one of this registry's value ids, or empty for none)"
        )
    embedder = load_embedder(args.embedder)
    index = build_index(registry, embedder, index_type=args.index_type, registry_source=str(path.resolve()))
    save_index(index, args.output)
    print(
        f"indexed {len(index.exemplars)} exemplars of {len(registry.values)} values from {path} with "
        f"{embedder.identity.name} ({embedder.identity.dimension}-d, {args.index_type}) into {args.output} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if args.calibrate:
        _calibrate_into(args.output, args.labelled, "calibration", 0.05)
    elif shipped_labels_fit:
        print(f"thresholds are defaults; calibrate with: livo values calibrate {args.output}")
    else:
        print(
            f"thresholds are defaults; to calibrate, label prompts with this registry's value ids "
            f"(columns prompt, label) and run: livo values calibrate {args.output} --labelled FILE"
        )
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from livo.user_paths import input_file, input_folder

    input_folder(args.index, flag="index")
    if args.labelled:
        input_file(args.labelled, flag="--labelled")
    _calibrate_into(args.index, args.labelled, args.split, args.max_benign_fpr)
    return 0


def run_select(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from livo.data.io import FORMATS, OUTPUT_FORMATS, read_prompt_table, write_table
    from livo.user_paths import input_file, input_folder, output_file
    from livo.values.registry import load_registry
    from livo.values.selector import ValueSelector

    # Every path and the prompt column first: a mistake costs no model load.
    input_folder(args.index, flag="--index")
    input_file(args.input, flag="--input", suffixes=FORMATS)
    output_file(args.output, flag="--output", overwrite=args.overwrite, suffixes=OUTPUT_FORMATS)
    table, prompts = read_prompt_table(args.input, args.column)
    registry = load_registry(args.registry) if args.registry else None
    selector = ValueSelector.load(args.index, registry=registry, judge=_judge(args.judge))
    texts = [p if p is not None else "" for p in prompts.to_pylist()]
    start = time.perf_counter()
    selections = selector.select(texts)
    seconds = time.perf_counter() - start
    for name in ("value_id", "score", "stage"):
        if name in table.column_names:
            table = table.drop_columns([name])
    table = table.append_column("value_id", pa.array([s.value_id for s in selections], pa.string()))
    table = table.append_column("score", pa.array([s.score for s in selections], pa.float64()))
    table = table.append_column("stage", pa.array([s.stage for s in selections], pa.string()))
    write_table(table, args.output)
    counts: dict[str, int] = {}
    for s in selections:
        key = s.value_id or "none"
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    rate = len(texts) / seconds if seconds > 0 else float("inf")
    print(f"selected values for {len(texts):,} prompts in {seconds:.2f} s ({rate:,.0f}/s): {summary}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from livo.user_paths import input_file, input_folder, output_file
    from livo.values.evaluation import KeywordBaseline, evaluate_selector, format_report
    from livo.values.selector import ValueSelector

    input_folder(args.index, flag="--index")
    if args.labelled:
        input_file(args.labelled, flag="--labelled")
    if args.json_path:
        output_file(args.json_path, flag="--json", overwrite=args.overwrite)
    selector = ValueSelector.load(args.index, judge=_judge(args.judge))
    rows = _labelled_rows(args.labelled, args.split, selector.registry.ids)
    ids = selector.registry.ids
    ours = evaluate_selector(selector, rows, ids)
    baseline = evaluate_selector(KeywordBaseline(selector.registry), rows, ids)
    print(format_report(f"selector ({selector.embedder.identity.name}, split {args.split})", ours))
    print(format_report(f"keyword baseline (split {args.split})", baseline))
    if args.json_path:
        from pathlib import Path

        from livo.values.index import write_json_atomic

        write_json_atomic(
            Path(args.json_path),
            {"split": args.split, "selector": ours.to_json(), "keyword_baseline": baseline.to_json()},
        )
    return 0
