"""TRIPOD+AI checklist of a run folder (``tripod_ai.json``), decided from the files the run actually wrote.

TRIPOD+AI (Collins GS, Moons KGM, Dhiman P, et al. BMJ 2024;385:e078378; checklist version of 11 January 2024)
has 27 main items, several with sub-items (1, 2, 3a–c, 4, 5a–b, 6a–c, 7, 8a–c, 9a–c, 10, 11, 12a–g, 13, 14, 15,
16, 17, 18a–f, 19, 20a–c, 21, 22, 23a–b, 24, 25, 26, 27a–c). Each item is marked:

* ``met``: the run's files hold what the item asks for; ``where`` lists the file and key (``run.json#split.n``).
* ``not_met``: they do not; ``why`` says what is missing and how to supply it.
* ``not_applicable``: a manuscript-only item (title, abstract, funding, ...) a software run cannot answer, or an
  item of the other study type (development items in an external-evaluation folder and vice versa).

Titles and requirements below are short paraphrases; read the paper for the full wording.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from medai.core.errors import DataValidationError

__all__ = ["ITEMS", "TripodStatus", "build_tripod_checklist", "render_tripod_checklist"]

SCHEMA = "medai-tripod-ai/1"
GUIDELINE = "TRIPOD+AI (Collins et al., BMJ 2024;385:e078378), checklist of 11 January 2024"
MANUSCRIPT = "manuscript item: a software run cannot answer it; write it in the paper"


class TripodStatus(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    NOT_APPLICABLE = "not_applicable"


class _Run:
    """The run folder's JSON files (absent or unreadable files are None) and a key lookup that says where."""

    FILES = ("run.json", "metrics.json", "fairness.json", "lineage.json", "missingness.json", "subgroups.json",
             "operating_points.json", "model/model_card.json", "model/preprocessor.json", "model/thresholds.json",
             "model/task.json", "model/config.json")

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.docs: dict[str, Any] = {}
        self.unreadable: list[str] = []
        for name in self.FILES:
            path = run_dir / name
            if not path.is_file():
                self.docs[name] = None
                continue
            try:
                self.docs[name] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.docs[name] = None
                self.unreadable.append(name)
        metrics = self.docs["metrics.json"] or {}
        self.evaluation_split = "test" if "test" in metrics else "external" if "external" in metrics else None
        self.external = self.evaluation_split == "external"

    def get(self, name: str, key: str = "") -> Any:
        value = self.docs.get(name)
        for part in [p for p in key.split(".") if p]:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def exists(self, name: str) -> bool:
        return (self.dir / name).is_file()


Decision = tuple[TripodStatus, list[str], str | None]


def _met(*where: str) -> Decision:
    return TripodStatus.MET, list(where), None


def _not_met(why: str, *where: str) -> Decision:
    return TripodStatus.NOT_MET, list(where), why


def _manuscript(hint: str = "") -> Callable[[_Run], Decision]:
    return lambda run: (TripodStatus.NOT_APPLICABLE, [], MANUSCRIPT + (f" ({hint})" if hint else ""))


def _present(run: _Run, name: str, key: str, why: str) -> Decision:
    value = run.get(name, key)
    if value not in (None, "", [], {}):
        return _met(f"{name}#{key}" if key else name)
    return _not_met(why)


# ------------------------------------------------------------------------------------------------ item checks
def _data_source(run: _Run) -> Decision:
    if run.get("run.json", "data.source") is None:
        return _not_met("run.json has no data.source: the data source is unknown to this folder")
    where = ["run.json#data.source", "run.json#data.sha256"]
    if run.get("lineage.json", "data") is not None:
        where.append("lineage.json#data")
    return _met(*where)


def _dates(run: _Run) -> Decision:
    for key in ("data.date_range", "data.dates", "data.accrual"):
        if run.get("run.json", key) is not None:
            return _met(f"run.json#{key}")
    return _not_met("the data carry no accrual or follow-up dates the run recorded; state the start and end of "
                    "participant accrual (and end of follow-up) in the paper")


def _eligibility(run: _Run) -> Decision:
    where = [f"run.json#{k}" for k in ("task.excluded", "task.min_age_years", "data.n_skipped")
             if run.get("run.json", k) is not None]
    if run.get("run.json", "task.excluded") is not None or run.get("run.json", "task.min_age_years") is not None:
        return _met(*where)
    return _not_met("no inclusion/exclusion criteria are recorded (only records dropped for invalid outcomes); "
                    "describe the eligibility criteria", *where)


def _outcome(run: _Run) -> Decision:
    task = run.get("run.json", "task") or {}
    if task.get("kind") and (task.get("label") or task.get("time") or task.get("outcome") or task.get("class_names")):
        return _met("run.json#task", *(["model/task.json"] if run.exists("model/task.json") else []))
    return _not_met("run.json does not define the outcome (task kind and label / time and event)")


def _initial_predictors(run: _Run) -> Decision:
    for key in ("data.feature_columns", "task.channels", "task.leads", "task.text", "task.concepts"):
        if run.get("run.json", key) not in (None, [], ""):
            return _met(f"run.json#{key}")
    if run.exists("model/preprocessor.json"):
        return _met("model/preprocessor.json")
    return _not_met("the predictors (feature columns / image / signal / text input) are not recorded")


def _preprocessing(run: _Run) -> Decision:
    if run.exists("model/preprocessor.json"):
        return _met("model/preprocessor.json", *(["missingness.json"] if run.exists("missingness.json") else []))
    return _not_met("model/preprocessor.json is missing: the input preprocessing is not recorded")


def _sample_size(run: _Run) -> Decision:
    where = ["run.json#split.n"] if run.get("run.json", "split.n") is not None else []
    return _not_met("no sample-size calculation (e.g. Riley et al., BMJ 2020) is part of the run; justify the size "
                    "in the paper — split sizes and the CI widths are recorded", *where)


def _missing_data(run: _Run) -> Decision:
    if run.get("missingness.json") is not None:
        where = ["missingness.json"]
        if run.get("model/model_card.json", "preprocessing_and_missing_data"):
            where.append("model/model_card.json#preprocessing_and_missing_data")
        return _met(*where)
    return _not_met("missingness.json is missing: how missing values were handled is not recorded")


def _data_use(run: _Run) -> Decision:
    return _present(run, "run.json", "split.strategy", "run.json has no split.strategy: how the data were "
                    "partitioned into train/validation/test is not recorded")


def _model_building(run: _Run) -> Decision:
    if run.get("run.json", "model.name") is None:
        return _not_met("run.json has no model section: model type and building steps are not recorded")
    where = ["run.json#model"]
    if run.get("run.json", "training") is not None:
        where.append("run.json#training")
    else:
        return _not_met("run.json has no training section: the model-building steps are not recorded", *where)
    return _met(*where)


def _clusters(run: _Run) -> Decision:
    attributes = run.get("fairness.json", "attributes") or {}
    clusters = [a for a in attributes if a.lower() in ("site", "centre", "center", "hospital", "country", "cluster")]
    if clusters:
        return _met(*[f"fairness.json#attributes.{a}" for a in clusters])
    return (TripodStatus.NOT_APPLICABLE, [], "no cluster (site/hospital) column was audited: single-source run; pass "
            "--group SITE to quantify heterogeneity across sites")


def _measures(run: _Run) -> Decision:
    split = run.evaluation_split
    table = run.get("metrics.json", split) if split else None
    if not table:
        return _not_met("metrics.json has no test (or external) split metrics")
    with_ci = [k for k, v in table.items() if isinstance(v, dict) and "ci_low" in v]
    if not with_ci:
        return _not_met(f"metrics.json {split} metrics carry no confidence intervals")
    calibration = [k for k in table if k in ("ece", "brier", "calibration_slope", "calibration_intercept", "ibs")
                   or k.startswith("calibration")]
    if not calibration:
        return _not_met(f"metrics.json {split} has discrimination but no calibration measure", f"metrics.json#{split}")
    where = [f"metrics.json#{split}"]
    if run.exists("report.html"):
        where.append("report.html")
    return _met(*where)


def _recalibration(run: _Run) -> Decision:
    split = run.evaluation_split
    if split and run.get("metrics.json", f"{split}.ece_before_recalibration") is not None:
        return _met(f"metrics.json#{split}.ece_before_recalibration", f"metrics.json#{split}.ece")
    return _not_met("no recalibration is recorded (metrics.json lacks ece_before_recalibration)")


def _prediction_code(run: _Run) -> Decision:
    if run.exists("model/MANIFEST.sha256"):
        return _met("model/MANIFEST.sha256", *(["run.json#artifact_sha256"]
                                               if run.get("run.json", "artifact_sha256") else []))
    return _not_met("model/ has no MANIFEST.sha256: the artefact that computed the predictions is not identified")


def _class_imbalance(run: _Run) -> Decision:
    for section in ("training", "model.params"):
        values = run.get("run.json", section) or {}
        for key in values if isinstance(values, dict) else ():
            if any(word in key.lower() for word in ("imbalance", "class_weight", "pos_weight", "sampler",
                                                     "oversampl", "undersampl")):
                return _met(f"run.json#{section}.{key}")
    return _not_met("the run records no class-imbalance handling; state that none was used (or how it was done and "
                    "how predictions were recalibrated)")


def _fairness(run: _Run) -> Decision:
    fairness = run.get("fairness.json")
    if fairness is None:
        return _not_met("fairness.json is missing: no subgroup fairness audit in this run")
    if not fairness.get("attributes"):
        return _not_met("fairness.json audits no attribute: the data have no sex/age/race column; pass --group COL",
                        "fairness.json")
    where = ["fairness.json#attributes"]
    if fairness.get("mitigation"):
        where.append("fairness.json#mitigation")
    return _met(*where)


def _output(run: _Run) -> Decision:
    kind = run.get("run.json", "task.kind")
    if kind is None:
        return _not_met("run.json has no task.kind: the model output is not recorded")
    where = ["run.json#task.kind"]
    if kind in ("binary", "multilabel"):
        if not run.exists("model/thresholds.json"):
            return _not_met("a classification output without model/thresholds.json: how the threshold was chosen is "
                            "not recorded", *where)
        where.append("model/thresholds.json")
        if run.get("run.json", "operating_point") is not None:
            where.append("run.json#operating_point")
    split = run.evaluation_split
    if split and run.get("metrics.json", f"{split}.conformal_coverage") is not None:
        where.append(f"metrics.json#{split}.conformal_coverage")
    return _met(*where)


def _train_vs_eval(run: _Run) -> Decision:
    if run.external:
        return _present(run, "run.json", "data.source", "the evaluation data source is not recorded")
    return _present(run, "run.json", "split.strategy", "how the evaluation split relates to the development data "
                    "is not recorded (run.json split.strategy)")


def _code_sharing(run: _Run) -> Decision:
    if run.get("lineage.json", "code.git_commit") or run.get("lineage.json", "code.medai_version"):
        return _met("lineage.json#code")
    return _not_met("lineage.json is missing or has no code version")


def _flow(run: _Run) -> Decision:
    if run.get("run.json", "split.n") is not None and run.get("run.json", "data.n_rows") is not None:
        return _met("run.json#data.n_rows", "run.json#split.n",
                    *(["run.json#data.n_skipped"] if run.get("run.json", "data.n_skipped") is not None else []))
    return _not_met("run.json lacks data.n_rows or split.n: the flow of records is not recorded")


def _characteristics(run: _Run) -> Decision:
    missing = [name for name in ("fairness.json", "missingness.json") if run.get(name) is None]
    if missing:
        return _not_met(f"{' and '.join(missing)} missing: group sizes and amounts of missing data are not both "
                        "recorded")
    return _met("fairness.json#overall", "fairness.json#attributes", "missingness.json")


def _compare_with_development(run: _Run) -> Decision:
    if not run.external:
        return (TripodStatus.NOT_APPLICABLE, [], "internal validation only: external validation not done in this run "
                "— use `medai evaluate` on data from the target population")
    return _present(run, "missingness.json", "", "missingness.json is missing: the evaluation data's predictor "
                    "distribution cannot be compared with the development data")


def _numbers_per_analysis(run: _Run) -> Decision:
    if run.get("run.json", "split.n") is None:
        return _not_met("run.json has no split.n: participants per analysis are not recorded")
    where = ["run.json#split.n"]
    if run.get("fairness.json", "overall") is not None:
        where.append("fairness.json#overall")
    return _met(*where)


def _specification(run: _Run) -> Decision:
    needed = ["model/MANIFEST.sha256", "model/config.json"]
    absent = [n for n in needed if not run.exists(n)]
    if absent:
        return _not_met(f"{', '.join(absent)} missing: the full model is not available from this folder")
    return _met(*needed, *(["model/model_card.json"] if run.exists("model/model_card.json") else []))


def _performance(run: _Run) -> Decision:
    measures = _measures(run)
    if measures[0] is not TripodStatus.MET:
        return measures
    fairness = _fairness(run)
    if fairness[0] is not TripodStatus.MET:
        return _not_met(f"overall performance has CIs but subgroup results are missing ({fairness[2]})", *measures[1])
    return _met(*measures[1], *fairness[1])


def _updating_results(run: _Run) -> Decision:
    decision = _recalibration(run)
    split = run.evaluation_split
    if decision[0] is TripodStatus.MET and run.get("metrics.json", f"{split}.conformal_coverage") is not None:
        return _met(*decision[1], f"metrics.json#{split}.conformal_coverage")
    return decision


def _limitations(run: _Run) -> Decision:
    return _present(run, "model/model_card.json", "caveats_and_recommendations",
                    "the model card lists no limitations (model/model_card.json caveats_and_recommendations)")


def _poor_input(run: _Run) -> Decision:
    if not run.exists("model/preprocessor.json"):
        return _not_met("model/preprocessor.json is missing: how incomplete inputs are handled is not recorded")
    split = run.evaluation_split
    extra = [f"metrics.json#{split}.abstain_rate"] if split and run.get(
        "metrics.json", f"{split}.abstain_rate") is not None else []
    return _met("model/preprocessor.json", *extra)


def _intended_use(run: _Run) -> Decision:
    return _present(run, "model/model_card.json", "intended_use",
                    "the model card states no intended use (model/model_card.json intended_use)")


@dataclass(frozen=True)
class Item:
    """One TRIPOD+AI item: number, section, short topic, paraphrased requirement, D/E applicability, check."""

    number: str
    section: str
    topic: str
    requirement: str
    applies: str  # "D" development, "E" evaluation, "D;E" both
    check: Callable[[_Run], Decision]


ITEMS: tuple[Item, ...] = (
    Item("1", "Title", "Title", "identify development/evaluation of a prediction model, population and outcome", "D;E",
         _manuscript("name the task, population and outcome")),
    Item("2", "Abstract", "Abstract", "structured summary (TRIPOD+AI for Abstracts)", "D;E", _manuscript()),
    Item("3a", "Introduction", "Background", "healthcare context, rationale, existing models", "D;E", _manuscript()),
    Item("3b", "Introduction", "Background", "target population, intended purpose and users", "D;E", _intended_use),
    Item("3c", "Introduction", "Background", "known health inequalities between sociodemographic groups", "D;E",
         _manuscript()),
    Item("4", "Introduction", "Objectives", "study objectives: development, validation or both", "D;E", _manuscript()),
    Item("5a", "Methods", "Data", "data sources, rationale, representativeness", "D;E", _data_source),
    Item("5b", "Methods", "Data", "dates of accrual and end of follow-up", "D;E", _dates),
    Item("6a", "Methods", "Participants", "study setting, number and location of centres", "D;E",
         lambda run: _not_met("the care setting and centres are not recorded by the run; describe them")),
    Item("6b", "Methods", "Participants", "eligibility criteria", "D;E", _eligibility),
    Item("6c", "Methods", "Participants", "treatments received and how they were handled", "D;E",
         lambda run: _not_met("treatments are not recorded by the run; describe them and how they were handled, if "
                              "relevant")),
    Item("7", "Methods", "Data preparation", "pre-processing and quality checks, similar across groups", "D;E",
         _preprocessing),
    Item("8a", "Methods", "Outcome", "outcome definition, time horizon, how and when assessed", "D;E", _outcome),
    Item("8b", "Methods", "Outcome", "qualifications of outcome assessors (subjective outcomes)", "D;E",
         lambda run: _not_met("who assessed the outcome labels is not recorded; describe the assessors (or state "
                              "the outcome needs no interpretation)")),
    Item("8c", "Methods", "Outcome", "blinding of outcome assessment", "D;E",
         lambda run: _not_met("blinding of the outcome assessment is not recorded; report it")),
    Item("9a", "Methods", "Predictors", "choice and pre-selection of initial predictors", "D", _initial_predictors),
    Item("9b", "Methods", "Predictors", "definition and measurement of all predictors", "D;E", _preprocessing),
    Item("9c", "Methods", "Predictors", "qualifications of predictor assessors (subjective predictors)", "D;E",
         lambda run: _not_met("who measured or interpreted the predictors is not recorded; describe it (or state "
                              "none needed interpretation)")),
    Item("10", "Methods", "Sample size", "how the study size was arrived at and why it suffices", "D;E", _sample_size),
    Item("11", "Methods", "Missing data", "handling of missing data, reasons for omitted data", "D;E", _missing_data),
    Item("12a", "Methods", "Analytical methods", "how the data were used and partitioned", "D", _data_use),
    Item("12b", "Methods", "Analytical methods", "predictor handling: functional form, rescaling, standardisation",
         "D", _preprocessing),
    Item("12c", "Methods", "Analytical methods", "model type, building steps, hyperparameter tuning, internal "
         "validation", "D", _model_building),
    Item("12d", "Methods", "Analytical methods", "heterogeneity across clusters (e.g. hospitals)", "D;E", _clusters),
    Item("12e", "Methods", "Analytical methods", "performance measures and plots (discrimination, calibration, "
         "utility)", "D;E", _measures),
    Item("12f", "Methods", "Analytical methods", "model updating (e.g. recalibration) from the evaluation", "E",
         _recalibration),
    Item("12g", "Methods", "Analytical methods", "how predictions were calculated for the evaluation", "E",
         _prediction_code),
    Item("13", "Methods", "Class imbalance", "class-imbalance methods and any recalibration", "D;E", _class_imbalance),
    Item("14", "Methods", "Fairness", "approaches to address model fairness", "D;E", _fairness),
    Item("15", "Methods", "Model output", "model output, classification thresholds and how they were chosen", "D",
         _output),
    Item("16", "Methods", "Training versus evaluation", "differences between development and evaluation data", "D;E",
         _train_vs_eval),
    Item("17", "Methods", "Ethical approval", "ethics committee and consent", "D;E",
         _manuscript("name the board and the consent or its waiver")),
    Item("18a", "Open science", "Funding", "funding and role of funders", "D;E", _manuscript()),
    Item("18b", "Open science", "Conflicts of interest", "conflicts of interest", "D;E", _manuscript()),
    Item("18c", "Open science", "Protocol", "where the protocol can be accessed", "D;E", _manuscript()),
    Item("18d", "Open science", "Registration", "study registration", "D;E", _manuscript()),
    Item("18e", "Open science", "Data sharing", "availability of the study data", "D;E",
         _manuscript("lineage.json holds the data hashes to cite")),
    Item("18f", "Open science", "Code sharing", "availability of the analytical code", "D;E", _code_sharing),
    Item("19", "Patient and public involvement", "Patient and public involvement", "patient and public involvement",
         "D;E", _manuscript()),
    Item("20a", "Results", "Participants", "flow of participants, with and without the outcome", "D;E", _flow),
    Item("20b", "Results", "Participants", "characteristics overall and per group, missing data", "D;E",
         _characteristics),
    Item("20c", "Results", "Participants", "evaluation vs development distribution of predictors", "E",
         _compare_with_development),
    Item("21", "Results", "Model development", "participants and outcome events in each analysis", "D;E",
         _numbers_per_analysis),
    Item("22", "Results", "Model specification", "full model available for predictions in new individuals", "D",
         _specification),
    Item("23a", "Results", "Model performance", "performance with CIs, including key subgroups", "D;E", _performance),
    Item("23b", "Results", "Model performance", "heterogeneity of performance across clusters", "D;E", _clusters),
    Item("24", "Results", "Model updating", "results of model updating and subsequent performance", "E",
         _updating_results),
    Item("25", "Discussion", "Interpretation", "overall interpretation, including fairness", "D;E", _manuscript()),
    Item("26", "Discussion", "Limitations", "limitations and their effects", "D;E", _limitations),
    Item("27a", "Discussion", "Usability", "handling of poor-quality or unavailable input data", "D", _poor_input),
    Item("27b", "Discussion", "Usability", "user interaction and expertise required", "D", _intended_use),
    Item("27c", "Discussion", "Usability", "next steps, applicability and generalisability", "D;E", _manuscript()),
)


def build_tripod_checklist(run_dir: Path) -> dict[str, Any]:
    """Mark every TRIPOD+AI item met / not met / not applicable from the files in ``run_dir``.

    Reads ``run.json``, ``metrics.json`` (incl. the conformal and recalibration keys of the test split),
    ``fairness.json``, ``lineage.json``, ``missingness.json``, ``model/model_card.json``,
    ``model/preprocessor.json``, ``model/thresholds.json``, ``model/MANIFEST.sha256``, ``report.html``. A folder
    whose metrics have an ``external`` split and no ``test`` split is an evaluation run: development-only (D) items
    are then not applicable. Evaluation (E) items stay applicable in a development run: its held-out test split is
    an (internal) evaluation.

    Args:
        run_dir: a finished run folder (or the ``.partial`` folder while the run writes it).

    Returns:
        JSON-ready dict: ``schema``, ``guideline``, ``study_type``, ``summary`` (count per status), ``unreadable``
        (files present but not valid JSON) and ``items``: ``{number: {"section", "topic", "requirement",
        "applies", "status", "where": [file#key, ...], "why": str | None}}``.

    Raises:
        DataValidationError: ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataValidationError(f"TRIPOD+AI checklist: {run_dir} is not a run folder; pass the folder `medai "
                                  "train` wrote.")
    run = _Run(run_dir)
    items: dict[str, Any] = {}
    for item in ITEMS:
        if run.external and item.applies == "D":
            decision: Decision = (TripodStatus.NOT_APPLICABLE, [], "development item: this folder is an external "
                                  "evaluation run")
        else:
            decision = item.check(run)
        status, where, why = decision
        items[item.number] = {"section": item.section, "topic": item.topic, "requirement": item.requirement,
                              "applies": item.applies, "status": str(status), "where": where, "why": why}
    summary = {str(s): sum(1 for v in items.values() if v["status"] == s) for s in TripodStatus}
    return {
        "schema": SCHEMA,
        "guideline": GUIDELINE,
        "study_type": "external evaluation" if run.external else "development with internal validation",
        "summary": summary,
        "unreadable": run.unreadable,
        "items": items,
    }


def render_tripod_checklist(checklist: dict[str, Any]) -> str:
    """Markdown table of :func:`build_tripod_checklist`'s output (for the report or a paper's supplement)."""
    marks = {"met": "met", "not_met": "**not met**", "not_applicable": "n/a"}
    lines = [f"# TRIPOD+AI checklist — {checklist['study_type']}", "", checklist["guideline"], "",
             ", ".join(f"{k}: {v}" for k, v in checklist["summary"].items()), "",
             "| item | topic | status | where / why |", "|---|---|---|---|"]
    for number, entry in checklist["items"].items():
        detail = "; ".join(entry["where"]) if entry["status"] == "met" else (entry["why"] or "")
        lines.append(f"| {number} | {entry['topic']}: {entry['requirement']} | {marks[entry['status']]} | "
                     f"{detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
