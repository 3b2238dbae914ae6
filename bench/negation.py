"""Negation / uncertainty of medai's finding extractor (medai.nlp.entities), and agreement with IU labels.

Part 1 — the 164 hand-labelled sentences of tests/data/negation_sentences.csv (written and labelled by a medai
developer, an AI assistant, before the extractor existed; a development set for the rules, so optimistic):
accuracy of ``negated`` and ``uncertain`` per (sentence, concept) row, a row whose concept is not found counting as
wrong, with a percentile bootstrap 95 % CI over rows. In-run baseline: a NegEx-like rule that calls a row negated
when any negation trigger occurs anywhere in the sentence, and uncertain when any hedge word does.

Part 2 — agreement with the IU chest X-ray labels (../shared/data/iu_xray_reports, 3,826 reports with findings or
impression text): per concept, the extractor's ``present`` (summarise_findings over findings + impression) against
the report's ``Problems`` terms (e.g. Cardiomegaly, Pleural Effusion, Opacity/Airspace Disease/Consolidation):
precision and recall with bootstrap 95 % CIs over reports. The IU labels were assigned by the dataset's annotators
from the same text (MeSH indexing), so this is agreement with another reading, not accuracy against images.

Run: ``python bench/negation.py [--quick]`` (writes bench/results/negation.json).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import common
from medai.evaluation.bootstrap import bootstrap_metrics
from medai.nlp.entities import Concept, extract_findings, extract_findings_batch, summarise_findings
from medai.nlp.sections import read_reports

NAME = "negation"
ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT / "tests" / "data" / "negation_sentences.csv"
IU = ROOT.parent / "shared" / "data" / "iu_xray_reports" / "indiana_reports.csv"

_NEGEX_TRIGGERS = re.compile(r"\b(no|not|without|negative for|free of|clear of|absent|resolved|resolution|"
                             r"ruled out|no longer|denies|never)\b", re.IGNORECASE)
_HEDGES = re.compile(r"\b(possible|possibly|probable|probably|likely|unlikely|may|might|could|questionable|"
                     r"question|suspected|suspicious|concern|concerning|cannot|versus|vs|borderline|evaluate|"
                     r"rule out|excluded|exclude|excluding)\b", re.IGNORECASE)

#: IU ``Problems`` terms counted as each concept.
IU_TERMS: dict[str, tuple[str, ...]] = {
    Concept.CARDIOMEGALY: ("Cardiomegaly",), Concept.PLEURAL_EFFUSION: ("Pleural Effusion",),
    Concept.PNEUMOTHORAX: ("Pneumothorax",), Concept.OPACITY: ("Opacity", "Airspace Disease", "Consolidation"),
    Concept.PNEUMONIA: ("Pneumonia", "Infiltrate"), Concept.ATELECTASIS: ("Pulmonary Atelectasis",),
    Concept.EDEMA: ("Pulmonary Edema",), Concept.NODULE: ("Nodule", "Mass"),
    Concept.GRANULOMA: ("Calcified Granuloma", "Granuloma", "Granulomatous Disease"),
    Concept.EMPHYSEMA: ("Emphysema", "Pulmonary Emphysema", "Pulmonary Disease, Chronic Obstructive"),
    Concept.FRACTURE: ("Fractures, Bone",), Concept.SCOLIOSIS: ("Scoliosis",), Concept.HERNIA: ("Hernia, Hiatal",),
}


def _accuracy(correct_negated, correct_uncertain):
    return {"negation_accuracy": float(np.mean(correct_negated)),
            "uncertainty_accuracy": float(np.mean(correct_uncertain))}


def hand_labelled() -> dict:
    table = pd.read_csv(SENTENCES)
    ours_n, ours_u, base_n, base_u, missed, errors = [], [], [], [], 0, []
    for row in table.itertuples():
        found = [f for f in extract_findings(row.sentence) if f.concept == row.concept]
        if found:
            negated = any(f.negated for f in found)
            uncertain = (not negated) and any(f.uncertain for f in found)
        else:
            missed += 1
            negated = uncertain = None
        ours_n.append(negated == bool(row.negated))
        ours_u.append(uncertain == bool(row.uncertain))
        if not (ours_n[-1] and ours_u[-1]):
            errors.append({"row": int(row.Index) + 2, "concept": row.concept, "gold": [int(row.negated),
                           int(row.uncertain)], "ours": None if negated is None else [int(negated), int(uncertain)]})
        base_negated = bool(_NEGEX_TRIGGERS.search(row.sentence))
        base_n.append(base_negated == bool(row.negated))
        base_u.append(bool(_HEDGES.search(row.sentence)) == bool(row.uncertain))
    ours = common.bootstrap_ci(_accuracy, (np.array(ours_n), np.array(ours_u)), strata=None)
    base = common.bootstrap_ci(_accuracy, (np.array(base_n), np.array(base_u)), strata=None)
    return {"n_rows": len(table), "n_sentences": int(table.sentence.nunique()), "concept_not_found": missed,
            "medai": ours, "negex_like_baseline": base, "errors": errors}


def _precision_recall(y_true, y_pred):
    tp = float(np.sum(y_true & y_pred))
    return {"precision": tp / y_pred.sum() if y_pred.sum() else float("nan"),
            "recall": tp / y_true.sum() if y_true.sum() else float("nan")}


def iu_agreement(quick: bool) -> dict:
    reports = read_reports(IU, section_columns={"findings": "findings", "impression": "impression"}, id="uid",
                           on_invalid="skip")
    labels = pd.read_csv(IU, dtype=str).set_index("uid")["Problems"].fillna("")
    if quick:
        reports.reports = reports.reports[:400]
    started = time.perf_counter()
    summaries = [summarise_findings(f) for f in extract_findings_batch(reports.reports)]
    seconds = time.perf_counter() - started
    per_concept = {}
    for concept, terms in IU_TERMS.items():
        y_true = np.array([any(t.strip() in terms for t in labels[r.id].split(";")) for r in reports.reports])
        y_pred = np.array([s.get(concept.value) == "present" for s in summaries])
        ci = bootstrap_metrics(_precision_recall, (y_true, y_pred), n_resamples=common.N_RESAMPLES,
                               seed=common.BOOTSTRAP_SEED)
        per_concept[concept.value] = {"n_labelled": int(y_true.sum()), "n_extracted_present": int(y_pred.sum()),
                                      **ci}
    return {"n_reports": len(reports), "n_skipped_empty": len(reports.skipped_rows),
            "extraction_ms_per_report": 1000 * seconds / max(len(reports), 1), "per_concept": per_concept}


def run(quick: bool = False) -> dict:
    started = time.perf_counter()
    hand = hand_labelled()
    iu = iu_agreement(quick) if IU.exists() else None
    table = []
    for metric in ("negation_accuracy", "uncertainty_accuracy"):
        table.append(common.row("medai ConText rules (hand-labelled set)", metric, None, hand["medai"][metric]))
        table.append(common.row("NegEx-like 'any trigger in sentence'", metric, None,
                                hand["negex_like_baseline"][metric]))
    if iu is not None:
        for concept, entry in iu["per_concept"].items():
            for metric in ("precision", "recall"):
                if entry[metric]["value"] is not None:
                    table.append(common.row(f"IU {concept} (n={entry['n_labelled']})", metric, None, entry[metric]))
    return {"name": NAME, "title": "medai.nlp negation/uncertainty (hand-labelled) and IU label agreement",
            "date": common.today(), "machine": common.machine(), "quick": quick,
            "runtime_s": time.perf_counter() - started,
            "protocol": __doc__.split("Run:")[0].strip(), "hand_labelled": hand, "iu": iu, "table": table}


if __name__ == "__main__":
    common.run_script(NAME, run, sys.argv[1:])
