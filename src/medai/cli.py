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
from medai.core.config import (
    DataConfig, EhrOutcome, EvaluationConfig, RunConfig, TaskConfig, TaskKind, load_recipe,
)
from medai.core.errors import InvalidParameterError, MedaiError
from medai.core.outputs import partial_path, write_text

# Not a terminal (CI logs, pipes): wide enough for a results table rather than rich's default of 80 columns, and
# messages are never wrapped, so a file path or a warning stays on one line that grep can find.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120,
                  soft_wrap=not sys.stderr.isatty())
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 120,
                      soft_wrap=not sys.stdout.isatty())

HEADLINE = {
    TaskKind.BINARY: ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "brier", "ece",
                      "calibration_slope"),
    TaskKind.MULTICLASS: ("auroc", "accuracy", "f1_macro", "brier", "ece"),
    TaskKind.REGRESSION: ("rmse", "mae", "r2"),
    TaskKind.SURVIVAL: ("c_index", "c_index_uno", "ibs"),
    TaskKind.MULTILABEL: ("auroc", "auprc", "accuracy", "f1_macro", "brier"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medai", description="Clinical prediction models you can validate, "
                                     "explain and audit — from your own data, on a CPU.")
    parser.add_argument("--version", action="version", version=f"medai {medai.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train, validate and register a model")
    train.add_argument("recipe", nargs="?", type=Path, help="a recipe YAML (see recipes/); or use --data")
    train.add_argument("--data", help="a CSV/Parquet file, a built-in dataset name (see `medai datasets`), image "
                       "data (a MedMNIST .npz, a folder with one sub-folder per class, a CSV manifest "
                       "path,label[,patient_id] or a HAM10000 folder) or ECG recordings (a folder with "
                       "REFERENCE.csv, WFDB records with .atr beat annotations, or a PTB-XL folder). With a recipe: "
                       "replaces its data path")
    train.add_argument("--model", help="registered network: mlp (tables, default), resnet18 (images, default), "
                       "resnet50, densenet121, vit; resnet1d (ECG, default), ecg_transformer")
    train.add_argument("--task", choices=[k.value for k in TaskKind] + [o.value for o in EhrOutcome],
                       help="default: detected from the outcome. EHR data (MIMIC-III tables, FHIR bundles, event "
                       "CSV): mortality, length_of_stay, readmission or phenotype")
    train.add_argument("--horizon-hours", type=float, help="EHR: the outcome window in hours (mortality: in "
                       "hospital; length_of_stay: 72; readmission: 720)")
    train.add_argument("--observation-hours", type=float, help="EHR: hours after ICU admission the prediction may "
                       "use (mortality 48; length_of_stay and phenotype 24)")
    train.add_argument("--text", help="text classification: the CSV column holding the note or report text")
    train.add_argument("--group", action="append", metavar="COL",
                       help="a column to audit for fairness (repeatable; sex, age and race/ethnicity columns are "
                       "found on their own)")
    train.add_argument("--label", help="outcome column (classification / regression)")
    train.add_argument("--time", help="survival time column")
    train.add_argument("--event", help="survival event column (1 = event, 0 = censored)")
    train.add_argument("--id", help="record id column (kept in predictions, never used as a feature)")
    train.add_argument("--patient-id", help="patient id column: the split keeps each patient in one split")
    train.add_argument("--positive-class", help="binary: the label value that is the condition detected")
    train.add_argument("--on-invalid", choices=["raise", "skip"],
                       help="records with a missing/invalid outcome or an unreadable image file: stop with an error "
                       "(default) or skip and count them in the report")
    train.add_argument("--seed", type=int, help="seed of the split and of training (default 42)")
    train.add_argument("--epochs", type=int, help="maximum training epochs")
    train.add_argument("--bootstrap", type=int, help="bootstrap resamples for CIs (default 1000)")
    train.add_argument("--out", type=Path, help="output run folder (default runs/NAME-TIMESTAMP)")
    train.add_argument("--resume", action="store_true", help="resume an interrupted run in OUT.partial")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="externally validate a trained run on new data")
    evaluate.add_argument("run", type=Path, help="a run folder (or its model/ folder)")
    evaluate.add_argument("--data", required=True, help="a CSV/Parquet file, a built-in dataset name, image data or "
                          "a folder of ECG recordings (the training data's layout)")
    evaluate.add_argument("--out", type=Path, help="output folder (default RUN/external-NAME-TIMESTAMP)")
    evaluate.add_argument("--bootstrap", type=int, help="bootstrap resamples for CIs (default: the run's)")

    predict = commands.add_parser("predict", help="predict for new records (CSV/Parquet in, CSV/JSON out)")
    predict.add_argument("run", type=Path, help="a run folder (or its model/ folder)")
    predict.add_argument("input", type=Path, help="records to predict: a table with the training feature columns; "
                         "for image models an image (PNG/JPEG/DICOM/NIfTI), a folder of images or a manifest; for "
                         "ECG models a recording (WFDB .hea, CinC .mat, DICOM waveform, CSV) or a folder of them")
    predict.add_argument("--out", type=Path, help="output .csv or .json (default: CSV on standard output)")
    predict.add_argument("--sampling-rate", type=float, help="ECG/PPG CSV without a time column: samples per second")

    monitor = commands.add_parser("monitor", help="stream an ECG through a rhythm model: rhythm per window, alerts "
                                  "(AF onset, flat line, poor signal) with timestamps, latency")
    monitor.add_argument("run", type=Path, help="a run folder (or its model/ folder) of an ECG rhythm model")
    monitor.add_argument("--record", type=Path, help="a recording to replay (WFDB, CinC .mat, DICOM, CSV); "
                         "default: samples from standard input, one per line (channels comma-separated)")
    monitor.add_argument("--sampling-rate", type=float, help="samples per second of standard input (or of a CSV "
                         "without a time column)")
    monitor.add_argument("--stride", type=float, help="seconds between windows (default: the model's stride)")
    monitor.add_argument("--confirm", type=int, default=2,
                         help="consecutive windows a rhythm change must hold before an alert (2)")
    monitor.add_argument("--alerts-only", action="store_true", help="print alerts only, not every window")
    monitor.add_argument("--out", type=Path, help="also write every event as JSON lines to this file")

    explain = commands.add_parser("explain", help="explain one prediction: saliency overlay (image), feature "
                                  "contributions (table, EHR), saliency strip (ECG), highlighted words (text)")
    explain.add_argument("run", type=Path, help="a run folder (or its model/ folder)")
    explain.add_argument("input", type=Path,
                         help="image models an image (PNG/JPEG/DICOM/NIfTI); tabular and text models a CSV/Parquet "
                         "table; ECG models one recording (WFDB .hea, CinC .mat, DICOM, CSV); EHR models the EHR "
                         "data (MIMIC folder, FHIR bundle(s), event CSV)")
    explain.add_argument("--out", type=Path, help="output .png (.html for text models); default "
                         "INPUT_STEM-explained.png/.html here")
    explain.add_argument("--method", choices=["grad_cam", "integrated_gradients", "both"], default="both",
                         help="image models: which map(s) to draw (default both, side by side)")
    explain.add_argument("--target", help="class (or finding) to explain; default the predicted one")
    explain.add_argument("--row", type=int, help="tabular/text: the row to explain, 1 = the first (default)")
    explain.add_argument("--id", help="tabular/text: the record with this value in the model's id column; "
                         "EHR: the sample (ICU stay) id as in `medai predict` output (default the first eligible)")
    explain.add_argument("--sampling-rate", type=float, help="ECG CSV without a time column: samples per second")

    commands.add_parser("datasets", help="list the built-in datasets and where they come from")

    verify = commands.add_parser("verify", help="check a model artefact against its sha256 manifest")
    verify.add_argument("model", type=Path, help="a run folder or its model/ folder")

    tile = commands.add_parser("tile", help="cut whole-slide images into tissue tiles + a manifest for training")
    tile.add_argument("slides", type=Path, metavar="SLIDES_CSV",
                      help="CSV with columns slide_path,label[,patient_id] (paths relative to the CSV)")
    tile.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    tile.add_argument("--tile-size", type=int, default=224, help="tile side in pixels at the chosen level (224)")
    resolution = tile.add_mutually_exclusive_group()
    resolution.add_argument("--level", type=int, help="pyramid level to read (0 = full resolution; default)")
    resolution.add_argument("--mpp", type=float, help="microns per pixel wanted: the closest level is read")
    tile.add_argument("--tissue-fraction", type=float, default=0.5, help="minimum tissue in a kept tile (0.5)")
    tile.add_argument("--max-tiles", type=int, help="at most this many tiles per slide (seeded random draw)")
    tile.add_argument("--seed", type=int, default=0, help="seed of the --max-tiles draw (0)")
    tile.add_argument("--on-invalid", choices=["raise", "skip"], default="raise",
                      help="a missing/unreadable slide or one without tissue: stop (default) or skip and count")
    tile.add_argument("--quiet", action="store_true", help="no progress bar")

    changelog = commands.add_parser("changelog", help="compare versions of a model: metric differences with CIs, "
                                    "config and data changes")
    changelog.add_argument("runs", type=Path, nargs="+", help="two or more run folders, oldest first (or a folder "
                           "holding run folders)")
    changelog.add_argument("--out", type=Path, help="write changelog.json and CHANGELOG.md into this new folder")

    from medai.nlp.deid import add_deid_parser
    from medai.nlp.draft_report import add_draft_report_parser

    add_draft_report_parser(commands)
    add_deid_parser(commands)

    from medai.serve.app import add_serve_parser
    from medai.serve.audit import add_audit_parser
    from medai.serve.auth import add_token_parser
    from medai.serve.monitoring import add_monitor_report_parser
    from medai.serve.pacs import add_pacs_parser

    add_serve_parser(commands)
    add_token_parser(commands)
    add_audit_parser(commands)
    add_monitor_report_parser(commands)
    add_pacs_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        commands = {"train": _train, "evaluate": _evaluate, "predict": _predict, "datasets": _datasets,
                    "verify": _verify, "tile": _tile, "explain": _explain, "monitor": _monitor,
                    "changelog": _changelog}
        # draft-report, deid, serve, token, audit, monitor-report bring their own handler (set_defaults(handler=...))
        return commands[args.command](args) if args.command in commands else args.handler(args)
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
    if result is None:  # a torchrun worker other than rank 0: rank 0 writes and prints the results
        return 0
    _print_results(result)
    out_console.print(f"Report: {result.out / 'report.html'}")
    out_console.print(f"Model:  {result.out / 'model'} (sha256 {result.run['artifact_sha256'][:16]}…)")
    return 0


def _train_config(args: argparse.Namespace) -> RunConfig:
    flags = {k: getattr(args, k) for k in ("task", "label", "time", "event", "id", "patient_id", "positive_class",
                                           "text", "horizon_hours", "observation_hours")}
    if args.recipe is not None:
        if any(v is not None for v in flags.values()):
            raise InvalidParameterError(
                "Give either a recipe or task flags (--task, --label, ...), not both: edit the recipe's 'task' "
                "section instead. (--data with a recipe replaces the recipe's data path.)"
            )
        config = load_recipe(args.recipe)
        if args.data is not None:
            config = config.replace(data=_data_config(args.data))
    elif args.data is not None:
        data = _data_config(args.data)
        kind = flags.pop("task") or TaskKind.CLASSIFICATION
        if kind in tuple(EhrOutcome):
            flags["outcome"] = EhrOutcome(kind)
            kind = TaskKind.MULTILABEL if kind == EhrOutcome.PHENOTYPE else TaskKind.BINARY
        if data.builtin is not None and data.builtin in _segmentation_datasets():
            kind = TaskKind.SEGMENTATION
        task = TaskConfig(kind=kind, **{k: v for k, v in flags.items() if v is not None})
        name = data.builtin or Path(args.data.rstrip("/")).stem
        config = RunConfig(data=data, task=task, name=name)
    else:
        raise InvalidParameterError("Nothing to train: pass a recipe YAML or --data FILE (see `medai train --help`).")
    if args.on_invalid is not None:
        config = config.replace(task=dataclasses.replace(config.task, on_invalid=args.on_invalid))
    if args.model is not None:
        config = config.replace(model=dataclasses.replace(config.model, name=args.model))
    if args.seed is not None:
        config = config.replace(split=dataclasses.replace(config.split, seed=args.seed),
                                training=dataclasses.replace(config.training, seed=args.seed))
    if args.epochs is not None:
        config = config.replace(training=dataclasses.replace(config.training, max_epochs=args.epochs))
    if args.bootstrap is not None:
        config = config.replace(evaluation=dataclasses.replace(config.evaluation, n_resamples=args.bootstrap))
        EvaluationConfig.__post_init__(config.evaluation)
    if args.group:
        config = config.replace(evaluation=dataclasses.replace(
            config.evaluation, subgroups=tuple(dict.fromkeys([*(config.evaluation.subgroups or ()), *args.group]))))
    return config


def _segmentation_datasets():
    from medai.data.phantoms import SEGMENTATION_DATASETS

    return SEGMENTATION_DATASETS


def _data_config(value: str) -> DataConfig:
    """A path when the file exists (or looks like one), else a built-in dataset name."""
    from medai.data.builtin import BUILTIN_DATASETS
    from medai.data.phantoms import SEGMENTATION_DATASETS

    path = Path(value)
    if path.exists() or path.suffix or "/" in value:
        return DataConfig(path=str(path))
    if value in SEGMENTATION_DATASETS:
        return DataConfig(builtin=value)
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

    predictions, predictor, warnings = predict_file(args.run, args.input, sampling_rate_hz=args.sampling_rate)
    if len(warnings) > 5:
        warnings = warnings[:5] + [f"... and {len(warnings) - 5} more"]
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


def _monitor(args: argparse.Namespace) -> int:
    import time

    from medai.registry.predictor import Predictor
    from medai.workflows.monitor import RhythmMonitor, read_stream, replay

    predictor = Predictor.load(args.run)
    events: list[str] = []
    began = time.perf_counter()
    if args.record is not None:
        from medai.io.ecg import read_ecg

        record = read_ecg(args.record, sampling_rate_hz=args.sampling_rate)
        monitor = RhythmMonitor(predictor, record.meta["sampling_rate_hz"], record.meta.get("lead_names"),
                                stride_s=args.stride, confirm=args.confirm)
        console.print(f"[bold]medai monitor[/] {args.record} ({record.meta['duration_s']:.0f} s, "
                      f"{record.meta['sampling_rate_hz']:g} Hz) — window {predictor.preprocessor.window_s:g} s, "
                      f"stride {monitor.stride / monitor.rate:g} s")
        stream = replay(monitor, record.data)
        n_samples = int(record.data.shape[1])
    else:
        monitor = RhythmMonitor(predictor, args.sampling_rate, stride_s=args.stride, confirm=args.confirm)
        counted = [0]

        def from_stdin():
            for chunk in read_stream(sys.stdin):
                counted[0] += len(chunk)
                yield from monitor.push(chunk)

        stream = from_stdin()
        n_samples = None
    for event in stream:
        line = json.dumps(event)
        events.append(line)
        if "alert" in event or not args.alerts_only:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    wall = time.perf_counter() - began
    summary = monitor.summary(n_samples if n_samples is not None else counted[0], wall)
    if args.out is not None:
        write_text(args.out, "\n".join(events + [json.dumps({"summary": summary})]) + "\n")
    latency = summary["latency_ms"] or {}
    console.print(f"{summary['n_windows']} windows ({summary['n_unusable']} unusable), {summary['n_alerts']} "
                  f"alert(s); {summary['x_real_time']}x real time; latency per window median "
                  f"{latency.get('median')} ms, p95 {latency.get('p95')} ms")
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
    out_console.print("[bold]Generated segmentation phantoms[/] — known truth, made on the fly from a seed:\n")
    for name in _segmentation_datasets().names():
        info = _segmentation_datasets().get(name)
        sizes = "/".join(str(v) for v in info.n.values())
        out_console.print(f"[bold]{escape(name)}[/] — {escape(info.title)} (train/val/test {sizes})\n")
    return 0


def _changelog(args: argparse.Namespace) -> int:
    from medai.core.outputs import check_run_directory, finish_run_directory, open_run_directory, write_json, \
        write_text
    from medai.registry.changelog import build_changelog, render_changelog

    runs = args.runs[0] if len(args.runs) == 1 else list(args.runs)
    log = build_changelog(runs)
    text = render_changelog(log)
    if args.out is not None:
        check_run_directory(args.out)
        work = open_run_directory(args.out)
        write_json(work / "changelog.json", log)
        write_text(work / "CHANGELOG.md", text)
        finish_run_directory(work, args.out)
    out_console.print(text, markup=False)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from medai.registry.artifact import resolve_model_dir, verify_manifest

    model_dir = resolve_model_dir(args.model)
    digest = verify_manifest(model_dir)
    out_console.print(f"OK: every file in {model_dir} matches its manifest (manifest sha256 {digest}).")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from medai.explain.records import OUT_SUFFIX, Modality, explain_input, modality_of
    from medai.registry.predictor import Predictor

    out = args.out
    if out is None:
        suffix = OUT_SUFFIX[modality_of(Predictor.load(args.run))]
        out = Path(f"{args.input.name.split('.')[0]}-explained{suffix}")
    summary = explain_input(args.run, args.input, out, row=args.row, id=args.id, target=args.target,
                            sampling_rate_hz=args.sampling_rate, method=args.method)
    for note in summary["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    # only the prediction, column/concept names and contributions: never the record's values, id or text
    out_console.print(f"Prediction ({escape(str(summary['record']))}): {escape(summary['prediction'])}; "
                      f"explained: {escape(str(summary['target']))}")
    if summary["top"]:
        out_console.print("Largest contributions: " + ", ".join(f"{escape(name)} {value:+.3f}"
                                                                 for name, value in summary["top"]))
    label = "Overlay" if summary["modality"] == Modality.IMAGE else "Explanation"
    out_console.print(f"{label}: " + ", ".join(summary["outputs"]))
    return 0


def _tile(args: argparse.Namespace) -> int:
    from medai.io.wsi import tile_slides

    console.print(f"[bold]medai tile[/] {args.slides} → {args.out}")
    out = tile_slides(args.slides, args.out, tile_size=args.tile_size, level=args.level, target_mpp=args.mpp,
                      tissue_fraction=args.tissue_fraction, max_tiles=args.max_tiles, seed=args.seed,
                      on_invalid=args.on_invalid, progress=not args.quiet)
    summary = json.loads((out / "tiling.json").read_text(encoding="utf-8"))
    for skipped in summary["skipped"]:  # reasons name the file and CSV row, never a patient id
        console.print(f"[yellow]skipped:[/] row {skipped['row']}: {escape(skipped['reason'])}", soft_wrap=True)
    n_slides = summary["n_slides"] - len(summary["skipped"])
    out_console.print(f"{summary['n_tiles']} tiles from {n_slides} slide{'' if n_slides == 1 else 's'} "
                      f"(skipped {len(summary['skipped'])}) → {out / 'manifest.csv'}")
    out_console.print(f"Train with: medai train --data {out / 'manifest.csv'}")
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
    headline = HEADLINE.get(result.kind) or list(metrics[splits[-1]])[:6]
    leading = [m for m in ("cinc2017_score", "auroc_A") if m in metrics[splits[-1]]]  # rhythm (CinC 2017) tasks
    names = leading + [m for m in headline if any(m in metrics[s] for s in splits)]
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
