"""Model card (Mitchell et al., FAT* 2019 sections) built from what the run measured.

The card states only what the run knows: free text about intended use and limitations comes from the recipe's
``model_card`` section; everything else (data, metrics with CIs, subgroups, missing data) is filled in from
the run's own results.
"""

from __future__ import annotations

from typing import Any

import medai


def build_model_card(run: dict[str, Any], metrics: dict[str, Any], baselines: dict[str, Any],
                     subgroups: dict[str, Any], preprocessing: str, card_text: dict[str, str]) -> dict[str, Any]:
    """The card as JSON-ready data."""
    task = run["task"]
    limitations = [
        "Validated only on a held-out split of the same data source; external validation (`medai evaluate`) on the "
        "target population is needed before any clinical use.",
        "Not a medical device; predictions support, never replace, clinical judgement.",
    ]
    if card_text.get("limitations"):
        limitations.insert(0, card_text["limitations"])
    small = [f"{a}={g}" for a, groups in subgroups.items() for g, e in groups.items() if e.get("warning")]
    if small:
        limitations.append("Subgroups with unreliable estimates (small n): " + ", ".join(small) + ".")
    limitations += run.get("warnings", [])
    return {
        "schema": "medai-model-card/1",
        "model_details": {
            "name": run["name"],
            "version": run["created"],
            "medai_version": medai.__version__,
            "architecture": run["model"]["description"],
            "parameters": run["model"]["params"],
            "n_weights": run["model"]["n_weights"],
            "training": {k: run["training"][k] for k in ("epochs_run", "best_epoch", "stopped_early")},
            "seed": run["seed"],
        },
        "intended_use": {
            "primary_use": card_text["intended_use"],
            "out_of_scope_and_contraindications": card_text["contraindications"],
            "task": task,
        },
        "factors": {"subgroups_audited": sorted(subgroups)},
        "metrics": {
            "definitions": "95 % percentile bootstrap CIs, stratified by outcome; thresholds chosen on validation.",
            "operating_point": run.get("operating_point"),
            "results": metrics,
            "baselines": {name: tables.get("test") for name, tables in baselines.items()},
        },
        "training_data": {"source": run["data"]["source"], "sha256": run["data"]["sha256"],
                          "n_rows": run["data"]["n_rows"], "split": run["split"],
                          **{k: run["data"][k] for k in ("package", "package_version", "licence", "citation")
                             if run["data"].get(k)}},
        "evaluation_data": {"splits": {k: v for k, v in run["split"]["n"].items() if k != "train"}},
        "preprocessing_and_missing_data": preprocessing,
        "quantitative_analyses": {"subgroups": subgroups},
        "ethical_considerations": (
            "Trained on retrospective data that may under-represent some groups; check the subgroup audit and "
            "recalibrate on local data. Outputs must not be used to deny care."
        ),
        "caveats_and_recommendations": limitations,
    }


def render_model_card(card: dict[str, Any]) -> str:
    """Markdown rendering of :func:`build_model_card`'s output."""
    details, use, metrics = card["model_details"], card["intended_use"], card["metrics"]
    lines = [
        f"# Model card: {details['name']}",
        "",
        "## Model details",
        f"- Architecture: {details['architecture']} ({details['n_weights']:,} weights)",
        f"- Version: {details['version']} · medai {details['medai_version']} · seed {details['seed']}",
        f"- Training: {details['training']['epochs_run']} epochs, best epoch {details['training']['best_epoch']}",
        "",
        "## Intended use",
        f"- Primary use: {use['primary_use']}",
        f"- Out of scope / contraindications: {use['out_of_scope_and_contraindications']}",
        f"- Task: {use['task'].get('kind')} — " + _task_text(use["task"]),
        "",
        "## Training and evaluation data",
        f"- Source: {card['training_data']['source']} (sha256 {card['training_data']['sha256'] or 'n/a'})",
        f"- Records: {card['training_data']['n_rows']}; split: {card['training_data']['split']['strategy']}, "
        + ", ".join(f"{k} {v}" for k, v in card["training_data"]["split"]["n"].items()),
        *([f"- Shipped by: {card['training_data']['package']} {card['training_data'].get('package_version') or ''}",
           f"- Licence: {card['training_data'].get('licence', 'n/a')}",
           f"- Cite: {card['training_data'].get('citation', 'n/a')}"] if card["training_data"].get("package") else []),
        "",
        "## Preprocessing and missing data",
        card["preprocessing_and_missing_data"],
        "",
        "## Metrics (95 % bootstrap CI)",
        metrics["definitions"],
    ]
    if metrics.get("operating_point"):
        point = metrics["operating_point"]
        lines.append(f"Operating point: {point['method']} on validation, threshold {point['threshold']:.4g}.")
    for split, table in metrics["results"].items():
        lines += ["", f"### {split}", "", "| metric | value | 95 % CI |", "|---|---|---|"]
        lines += [f"| {name} | {_num(m['value'])} | {_num(m['ci_low'])}–{_num(m['ci_high'])} |" for name, m in table.items()]
    if metrics["baselines"]:
        lines += ["", "### In-run baselines (test)", ""]
        for name, table in metrics["baselines"].items():
            headline = ", ".join(f"{k} {_num(v['value'])}" for k, v in list((table or {}).items())[:4])
            lines.append(f"- {name}: {headline}")
    lines += ["", "## Subgroups audited", ", ".join(card["factors"]["subgroups_audited"]) or "none present in the data",
              "", "## Ethical considerations", card["ethical_considerations"], "", "## Caveats and recommendations"]
    lines += [f"- {c}" for c in card["caveats_and_recommendations"]]
    return "\n".join(lines) + "\n"


def _task_text(task: dict[str, Any]) -> str:
    if task.get("kind") == "survival":
        return f"time '{task.get('time')}', event '{task.get('event')}' (1 = event)"
    if task.get("positive_class") is not None:
        return f"label '{task.get('label')}', positive class '{task.get('positive_class')}'"
    return f"label '{task.get('label')}'"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
