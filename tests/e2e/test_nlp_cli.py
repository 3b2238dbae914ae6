"""`medai draft-report` and `medai deid` through the real command line (medai.cli.main)."""

import json

import pytest

from medai.core.errors import DataValidationError, RunStateError
from medai.nlp.draft_report import DRAFT_HEADER


def _run(*argv):
    from medai.cli import build_parser

    args = build_parser().parse_args([str(a) for a in argv])
    return args.handler(args)  # the handler itself: errors propagate to pytest.raises (main() would print them)


def test_the_commands_are_wired_into_medai(tmp_path):
    from medai.cli import main

    note = tmp_path / "note.txt"
    note.write_text("Seen by Dr. Alvarez on 03/14/2021. MRN 12345678.\n", encoding="utf-8")
    assert main(["deid", str(note), "--out", str(tmp_path / "clean.txt")]) == 0
    assert "Alvarez" not in (tmp_path / "clean.txt").read_text()


def test_draft_report_from_text_file_with_predictions(tmp_path, capsys):
    report = tmp_path / "study.txt"
    report.write_text("FINDINGS: The heart is enlarged. No pneumothorax.\nIMPRESSION: Possible small left "
                      "pleural effusion.\n", encoding="utf-8")
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps({"model": "cxr@1", "task": "multilabel", "predictions": [
        {"id": "study", "score_cardiomegaly": 0.91, "pred_cardiomegaly": 1, "pred": "cardiomegaly"}]}))
    assert _run("draft-report", report, "--out", tmp_path / "draft", "--predictions", predictions,
                "--patient", "Patient/x1") == 0
    text = (tmp_path / "draft" / "draft.txt").read_text()
    assert text.startswith(DRAFT_HEADER) and "probability 0.910" in text and "cxr@1" in text
    bundle = json.loads((tmp_path / "draft" / "draft.fhir.json").read_text())
    values = {e["resource"]["code"]["text"]: e["resource"].get("valueCodeableConcept", {}).get("text")
              for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert values["Cardiomegaly"] == "present" and values["Pneumothorax"] == "absent"
    assert values["Pleural effusion"] == "uncertain"
    assert not (tmp_path / "draft.partial").exists()
    with pytest.raises(RunStateError, match="already exists"):
        _run("draft-report", report, "--out", tmp_path / "draft")


def test_draft_report_from_csv_row(tmp_path):
    table = tmp_path / "reports.csv"
    table.write_text("uid,findings,impression\n7,No effusion.,Normal.\n8,Cardiomegaly.,Cardiomegaly.\n")
    with pytest.raises(Exception, match="holds 2 reports; choose one with --id or --row"):
        _run("draft-report", table, "--out", tmp_path / "a")
    assert _run("draft-report", table, "--out", tmp_path / "b", "--id", "8") == 0
    assert "Cardiomegaly:" in (tmp_path / "b" / "draft.txt").read_text()
    assert _run("draft-report", table, "--out", tmp_path / "c", "--row", "1") == 0
    assert "Pleural effusion: absent" in (tmp_path / "c" / "draft.txt").read_text()
    assert not (tmp_path / "a").exists()


def test_deid_text_and_csv(tmp_path, capsys):
    note = tmp_path / "note.txt"
    note.write_text("Seen by Dr. Halloran on 03/04/2021. MRN: 00998877. Call 317-555-0123.\n")
    assert _run("deid", note, "--out", tmp_path / "out.txt") == 0
    out = (tmp_path / "out.txt").read_text()
    assert out == "Seen by Dr. [NAME] on [DATE]. MRN: [ID]. Call [PHONE].\n"
    assert "Halloran" not in capsys.readouterr().out
    assert _run("deid", note, "--out", tmp_path / "shift.txt", "--date-shift-days", "10") == 0
    assert "03/14/2021" in (tmp_path / "shift.txt").read_text()
    table = tmp_path / "notes.csv"
    table.write_text('id,text\n1,"Dr. Halloran called."\n')
    assert _run("deid", table, "--out", tmp_path / "notes_out.csv", "--column", "text", "--mode", "surrogate") == 0
    assert "Halloran" not in (tmp_path / "notes_out.csv").read_text()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9")
    with pytest.raises(DataValidationError, match="bad.txt is not valid utf-8"):
        _run("deid", bad, "--out", tmp_path / "x.txt")
