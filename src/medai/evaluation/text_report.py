"""The text-classification section of the report: what the in-run TF-IDF baseline weighs most per class or
finding, and which test reports the model got wrong — by id only. Report text never enters the page: the ids let
an authorised reader look the reports up in the source table.

Reads ``run.json`` ``text`` (written by :mod:`medai.workflows.text`); absent for other runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medai.evaluation.report import Block, Cell, Table, _section


def text_section(run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The "Text model: terms and errors" section, or None for runs that are not text runs."""
    text = run.get("text")
    if not isinstance(text, Mapping):
        return None
    blocks: list[Block] = []
    terms = text.get("top_terms") or {}
    if terms:
        table = Table(columns=["Class / finding", "Most weighted TF-IDF terms (coefficient)"], caption=(
            "The in-run TF-IDF + logistic-regression baseline's largest positive coefficients per class or finding "
            "(only terms found in at least 10 training reports). They show which words carry the label in this "
            "data — a check for label leakage (e.g. a template phrase) and for what a reader would expect."))
        for name, entries in terms.items():
            listed = ", ".join(f"{term} ({float(weight):.2f})" for term, weight in entries)
            table.rows.append((str(name), [Cell(listed or "—")], None))
        blocks.append(table)
    errors = text.get("errors") or {}
    if errors:
        table = Table(columns=["Class / finding", "False positives", "False negatives",
                               "Most confident false positives (ids)", "Most confident false negatives (ids)"],
                      caption=("Misclassified reports at the operating threshold chosen on validation, by id "
                               "(never by text); the ids point into the evaluated table."))
        for name, entry in errors.items():
            table.rows.append((str(name), [
                Cell(f"{int(entry.get('n_false_positive', 0)):,}"), Cell(f"{int(entry.get('n_false_negative', 0)):,}"),
                Cell(", ".join(entry.get("false_positive_ids") or []) or "—"),
                Cell(", ".join(entry.get("false_negative_ids") or []) or "—")], None))
        blocks.append(table)
    if not blocks:
        return None
    return _section("text", "Text model: terms and errors", blocks)
