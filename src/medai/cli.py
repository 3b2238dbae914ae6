"""The `medai` command. Thin: parses arguments, calls library functions, prints.

Errors print one line (``error: ...``) and exit with status 2 for bad input and 1 for internal failures;
``--debug`` shows the traceback. An interrupted training run exits 130 and can be resumed with ``--resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import medai
from medai.core.config import DataConfig, EvaluationConfig, RunConfig, TaskConfig, TaskKind, load_recipe
from medai.core.errors import InvalidParameterError, MedaiError
from medai.core.outputs import partial_path, write_text

# Not a terminal (CI logs, pipes): wide enough for a results table rather than rich's default of 80 columns.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)

HEADLINE = {
    TaskKind.BINARY: ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece",
                      "calibration_slope"),
    TaskKind.MULTICLASS: ("auroc", "accuracy", "f1_macro", "brier", "ece"),
    TaskKind.REGRESSION: ("rmse", "mae", "r2"),
    TaskKind.SURVIVAL: ("c_index", "c_index_uno", "ibs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medai", description="Clinical prediction models you can validate, "
                                     "explain and audit — from your own data, on a CPU.")
    parser.add_argument("--version", action="version", version=f"medai {medai.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train, validate and register a model")
    train.add_argument("recipe", nargs="?", type=Path, help="a recipe YAML (see recipes/); or use --data")
    train.add_argument("--data", help="a CSV/Parquet file or a built-in dataset name (see `medai datasets`)")
    train.add_argument("--task", choices=[k.value for k in TaskKind], help="default: detected from the outcome")
    train.add_argument("--label", help="outcome column (classification / regression)")
    train.add_argument("--time", help="survival time column")
    train.add_argument("--event", help="survival event column (1 = event, 0 = censored)")
    train.add_argument("--id", help="record id column (kept in predictions, never used as a feature)")
    train.add_argument("--patient-id", help="patient id column: the split keeps each patient in one split")
    train.add_argument("--positive-class", help="binary: the label value that is the condition detected")
    train.add_argument("--on-invalid", choices=["raise", "skip"],
                       help="records with a missing/invalid outcome: stop with an error (default) or skip and count")
    train.add_argument("--seed", type=int, help="seed of the split and of training (default 42)")
    train.add_argument("--epochs", type=int, help="maximum training epochs")
    train.add_argument("--bootstrap", type=int, help="bootstrap resamples for CIs (default 1000)")
    train.add_argument("--out", type=Path, help="output run folder (default runs/NAME-TIMESTAMP)")
    train.add_argument("--resume", action="store_true", help="resume an interrupted run in OUT.partial")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="externally validate a trained run on new data")
    evaluate.add_argument("run", type=Path, help="a run folder (or its model/ folder)")
    evaluate.add_argument("--data", required=True, help="a CSV/Parquet file or a built-in dataset name")
    evaluate.add_argument("--out", type=Path, help="output folder (default RUN/external-NAME-TIMESTAMP)")
    evaluate.add_argument("--bootstrap", type=int, help="bootstrap resamples for CIs (default: the run's)")

    predict = commands.add_parser("predict", help="predict for new records (CSV/Parquet in, CSV/JSON out)")
    predict.add_argument("run", type=Path, help="a run folder (or its model/ folder)")
    predict.add_argument("input", type=Path, help="records to predict, with the training feature columns")
    predict.add_argument("--out", type=Path, help="output .csv or .json (default: CSV on standard output)")

    commands.add_parser("datasets", help="list the built-in datasets and where they come from")

    verify = commands.add_parser("verify", help="check a model artefact against its sha256 manifest")
    verify.add_argument("model", type=Path, help="a run folder or its model/ folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return {"train": _train, "evaluate": _evaluate, "predict": _predict, "datasets": _datasets,
                "verify": _verify}[args.command](args)
    except KeyboardInterrupt:
        if args.command == "train" and getattr(args, "_out", None) is not None:
            console.print(f"[yellow]Interrupted.[/] The unfinished run is kept in {partial_path(args._out)}; "
                          "resume it with the same command plus --resume.")
        else:
            console.print("[yellow]Interrupted.[/]")
        return 130
    except MedaiError as exc:
        if args.debug:
            raise
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line; the traceback with --debug
        if args.debug:
            raise
        console.print(f"[red]internal error:[/] {exc.__class__.__name__}: {exc}. Rerun with --debug for the "
                      "traceback and report it.", soft_wrap=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):  # SIGTERM ends a run like Ctrl-C: checkpoint kept, resumable
    raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> int:
    from medai.pipeline import train

    config = _train_config(args)
    out = args.out or Path("runs") / f"{config.name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    args._out = out
    console.print(f"[bold]medai train[/] → {out}")
    result = train(config, out, resume=args.resume, progress=not args.quiet, announce=console.print)
    _print_results(result)
    out_console.print(f"Report: {result.out / 'report.html'}")
    out_console.print(f"Model:  {result.out / 'model'} (sha256 {result.run['artifact_sha256'][:16]}…)")
    return 0


def _train_config(args: argparse.Namespace) -> RunConfig:
    flags = {k: getattr(args, k) for k in ("task", "label", "time", "event", "id", "patient_id", "positive_class",
                                           "on_invalid")}
    if args.recipe is not None:
        if args.data is not None or any(v is not None for v in flags.values()):
            raise InvalidParameterError(
                "Give either a recipe or --data with task flags, not both: edit the recipe's 'data' and 'task' "
                "sections instead."
            )
        config = load_recipe(args.recipe)
    elif args.data is not None:
        data = _data_config(args.data)
        kind = flags.pop("task") or TaskKind.CLASSIFICATION
        task = TaskConfig(kind=kind, **{k: v for k, v in flags.items() if v is not None})
        name = data.builtin or Path(args.data).stem
        config = RunConfig(data=data, task=task, name=name)
    else:
        raise InvalidParameterError("Nothing to train: pass a recipe YAML or --data FILE (see `medai train --help`).")
    if args.seed is not None:
        config = config.replace(split=dataclasses.replace(config.split, seed=args.seed),
                                training=dataclasses.replace(config.training, seed=args.seed))
    if args.epochs is not None:
        config = config.replace(training=dataclasses.replace(config.training, max_epochs=args.epochs))
    if args.bootstrap is not None:
        config = config.replace(evaluation=dataclasses.replace(config.evaluation, n_resamples=args.bootstrap))
        EvaluationConfig.__post_init__(config.evaluation)
    return config


def _data_config(value: str) -> DataConfig:
    """A path when the file exists (or looks like one), else a built-in dataset name."""
    from medai.data.builtin import BUILTIN_DATASETS

    path = Path(value)
    if path.exists() or path.suffix or "/" in value:
        return DataConfig(path=str(path))
    return DataConfig(builtin=BUILTIN_DATASETS.get(value).name)  # unknown names raise with "did you mean"


def _evaluate(args: argparse.Namespace) -> int:
    from medai.pipeline import evaluate_external

    data = _data_config(args.data)
    name = data.builtin or Path(args.data).stem
    out = args.out or args.run / f"external-{name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    console.print(f"[bold]medai evaluate[/] {args.run} on {args.data} → {out}")
    result = evaluate_external(args.run, data, out, announce=console.print, n_resamples=args.bootstrap)
    _print_results(result)
    out_console.print(f"Report: {result.out / 'report.html'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from medai.pipeline import predict_file

    predictions, predictor, warnings = predict_file(args.run, args.input)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if args.out is None:
        sys.stdout.write(predictions.to_csv(index=False))
        return 0
    suffix = args.out.suffix.lower()
    if suffix == ".json":
        payload = {"model": predictor.model_id, "task": predictor.task["kind"],
                   "predictions": json.loads(predictions.to_json(orient="records"))}
        write_text(args.out, json.dumps(payload, indent=2) + "\n")
    elif suffix == ".csv":
        write_text(args.out, predictions.to_csv(index=False))
    else:
        raise InvalidParameterError(f"--out must end in .csv or .json; got '{args.out.name}'.")
    console.print(f"{len(predictions)} predictions written to {args.out}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from medai.data.builtin import install_command, list_builtin

    out_console.print("[bold]Built-in datasets[/] — read from installed packages, never downloaded. "
                      "Use one with `medai train --data NAME`.\n")
    for info in list_builtin():
        outcome = f"time '{info.time}' ({info.time_unit}), event '{info.event}'" if info.time else f"label '{info.label}'"
        install = install_command(info) or "core dependency"
        out_console.print(f"[bold]{escape(info.name)}[/] — {escape(info.title)}")
        out_console.print(f"    {info.task} · {info.n_rows} rows · {escape(outcome)}")
        out_console.print(f"    from {escape(info.source)} ({escape(install)})")
        out_console.print(f"    licence: {escape(info.licence)}")
        out_console.print(f"    cite: {escape(info.citation)}\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from medai.registry.artifact import resolve_model_dir, verify_manifest

    model_dir = resolve_model_dir(args.model)
    digest = verify_manifest(model_dir)
    out_console.print(f"OK: every file in {model_dir} matches its manifest (manifest sha256 {digest}).")
    return 0


def _print_results(result: Any) -> None:
    metrics, baselines = result.metrics, result.baselines
    splits = list(metrics)
    table = Table(title=f"{result.run['name']}: metrics with 95 % bootstrap CIs")
    table.add_column("metric")
    for split in splits:
        table.add_column(split)
    for name in baselines:
        table.add_column(f"{name} (test)")
    names = [m for m in HEADLINE[result.kind] if any(m in metrics[s] for s in splits)]
    names += sorted((m for m in metrics[splits[-1]] if m.startswith("td_auc_")), key=lambda m: float(m[7:]))
    for metric in names:
        row = [metric] + [_cell(metrics[s].get(metric)) for s in splits]
        row += [_cell(tables.get("test", {}).get(metric)) for tables in baselines.values()]
        table.add_row(*row)
    out_console.print(table)


def _cell(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} ({entry['ci_low']:.3f}–{entry['ci_high']:.3f})"


if __name__ == "__main__":
    sys.exit(main())
