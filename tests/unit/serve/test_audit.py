"""The audit log: appends, the hash chain, append-only triggers, tamper detection, concurrency, `medai audit`."""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import threading

import pytest

from medai.core.errors import DataValidationError, InvalidParameterError, UnknownNameError
from medai.serve import store
from medai.serve.audit import GENESIS_HASH, AuditLog, add_audit_parser, canonical_json, entry_hash

BODY = b'{"records": [{"id": "r1", "age": 71, "note": "John Smith, MRN 123456"}]}'


def predict_event(i: int = 0, **changes) -> dict:
    event = {"actor": "tok_1a2b3c4d", "role": "clinician", "action": "predict", "model_id": "pneumonia-cxr",
             "model_version": "2026-11-26T10:00:00Z", "model_sha256": "b" * 64,
             "input_sha256": hashlib.sha256(BODY + str(i).encode()).hexdigest(), "n_records": 1 + i % 3,
             "status": 200, "outcome": {"decisions": {"pneumonia": i % 2, "normal": 1 - i % 2}, "referred": 0}}
    return {**event, **changes}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "medai.db"


@pytest.fixture
def db(path):
    return store.engine(f"sqlite:///{path}")


def filled(db, n: int = 5) -> AuditLog:
    log = AuditLog(db)
    for i in range(n):
        log.append(predict_event(i))
    return log


def tamper(path, *statements):
    """What an attacker with file access does: drop the append-only triggers, then change rows."""
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TRIGGER audit_log_no_update")
        connection.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            connection.execute(statement)
    connection.close()


def test_append_builds_a_chain(db):
    log = AuditLog(db)
    entries = [log.append(predict_event(i)) for i in range(4)]
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    fields = {k: v for k, v in entries[2].as_dict().items() if k not in ("prev_hash", "hash")}
    assert entries[2].hash == hashlib.sha256((entries[1].hash + canonical_json(fields)).encode()).hexdigest()
    assert entries[0].time <= entries[3].time and entries[0].time.endswith("Z")
    assert log.entries() == entries  # read back exactly as written
    result = log.verify()
    assert (result.ok, result.n_entries, result.first_bad_seq, result.head_hash) == (True, 4, None, entries[-1].hash)
    assert log.head() == (4, entries[-1].hash)


def test_empty_log_verifies(db):
    result = AuditLog(db).verify(expected_head=GENESIS_HASH, expected_count=0)
    assert (result.ok, result.n_entries, result.head_hash) == (True, 0, GENESIS_HASH)


def test_no_request_body_or_patient_data_is_stored(db, path):
    filled(db, 3)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(FULL)")
    data = path.read_bytes()
    assert b"John Smith" not in data and b"123456" not in data and hashlib.sha256(BODY + b"0").hexdigest().encode() \
        in data


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"note": "free text"}, InvalidParameterError, r"unknown field\(s\) 'note'"),
    ({"seq": 7}, InvalidParameterError, r"unknown field\(s\) 'seq'.*set by the log"),
    ({"actor": "medai_" + "x" * 43}, InvalidParameterError, "looks like an API token.*never the token"),
    ({"actor": "a b"}, InvalidParameterError, "'actor' parameter of AuditLog.append"),
    ({"action": "predcit"}, UnknownNameError, "Unknown audit action 'predcit'. Did you mean 'predict'"),
    ({"input_sha256": "ABC"}, InvalidParameterError, "'input_sha256' parameter .* 64 lowercase hex"),
    ({"status": 42}, InvalidParameterError, "'status' parameter .* HTTP status"),
    ({"n_records": -1}, InvalidParameterError, "'n_records' parameter"),
    ({"outcome": {"note": "patient is Mr X"}}, DataValidationError, "value of 'note' is a str; .* counts only"),
    ({"outcome": {"mean_probability": 0.8}}, DataValidationError, "value of 'mean_probability' is a float"),
    ({"outcome": {"a": {"b": {"c": 1}}}}, DataValidationError, "nested at most one level"),
    ({"outcome": {"Mr X\nMRN 1": 1}}, DataValidationError, "key is not a label of at most 200 printable"),
    ({"outcome": {"Mr X" + "y" * 200: 1}}, DataValidationError, "key is not a label of at most 200 printable"),
])
def test_append_refuses_bad_events(db, change, error, match):
    log = AuditLog(db)
    with pytest.raises(error, match=match) as caught:
        log.append(predict_event(**change))
    assert "x" * 43 not in str(caught.value) and "Mr X" not in str(caught.value)
    assert log.head() == (0, GENESIS_HASH)  # nothing written


def test_outcome_keys_as_the_service_builds_them(db):
    # Multi-label decisions are joined findings (possibly none); regression models have no decision at all.
    outcome = {"n_records": 4, "decisions": {"Atelectasis;Effusion": 1, "": 1, "None": 1, "[high]": 1}, "referred": 0}
    entry = AuditLog(db).append(predict_event(action="cds_patient_view", outcome=outcome))
    assert AuditLog(db).entries()[0].outcome == outcome == entry.outcome
    assert AuditLog(db).verify().ok


def test_triggers_block_update_and_delete(db, path):
    filled(db, 2)
    with sqlite3.connect(path) as connection:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE is not allowed"):
            connection.execute("UPDATE audit_log SET status = 500 WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE is not allowed"):
            connection.execute("DELETE FROM audit_log WHERE seq = 2")
    connection.close()
    assert AuditLog(db).verify().ok


def test_modified_row_is_found(db, path):
    filled(db, 5)
    tamper(path, "UPDATE audit_log SET outcome = '{\"referred\":1}' WHERE seq = 3")
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "content of entry 3 does not match its hash" in result.reason


def test_deleted_middle_row_is_found(db, path):
    filled(db, 5)
    tamper(path, "DELETE FROM audit_log WHERE seq = 3")
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "entry 3 is missing" in result.reason


def test_deleted_and_renumbered_rows_are_found(db, path):
    filled(db, 5)  # hide the gap by renumbering: the link to the previous hash breaks instead
    tamper(path, "DELETE FROM audit_log WHERE seq = 3", "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "prev_hash of entry 3 is not the hash of entry 2" in result.reason


def test_inserted_rows_are_found(db, path):
    log = filled(db, 4)
    head = log.head()[1]
    forged = ("INSERT INTO audit_log VALUES ({seq}, '2026-01-01T00:00:00.000000Z', 'tok_ffffffff', 'admin', "
              "'retire_model', NULL, 'm', 'v', NULL, NULL, 0, 200, '{{}}', '{prev}', '{hash}')")
    tamper(path, forged.format(seq=5, prev=head, hash="f" * 64))
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "content of entry 5 does not match its hash" in result.reason

    with sqlite3.connect(path) as connection:  # triggers are back (re-created on open); DELETE is blocked again
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("DELETE FROM audit_log WHERE seq = 5")
    connection.close()


def test_row_inserted_before_the_first_is_found(db, path):
    filled(db, 3)
    tamper(path, "INSERT INTO audit_log VALUES (0, '2026-01-01T00:00:00.000000Z', 'tok_ffffffff', 'admin', "
                 f"'retire_model', NULL, 'm', 'v', NULL, NULL, 0, 200, '{{}}', '{GENESIS_HASH}', '{'f' * 64}')")
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 0)
    assert "a row was inserted" in result.reason


def test_reordered_rows_are_found(db, path):
    filled(db, 5)
    tamper(path, "UPDATE audit_log SET seq = -1 WHERE seq = 3", "UPDATE audit_log SET seq = 3 WHERE seq = 4",
           "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    result = AuditLog(db).verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "prev_hash of entry 3" in result.reason


def test_truncated_tail_needs_the_anchor(db, path):
    log = filled(db, 5)
    count, head = log.head()
    tamper(path, "DELETE FROM audit_log WHERE seq > 3")
    # The limitation the docs state: what remains is a valid chain.
    assert AuditLog(db).verify().ok
    result = AuditLog(db).verify(expected_head=head, expected_count=count)
    assert (result.ok, result.first_bad_seq, result.n_entries) == (False, 4, 3)
    assert "not in the log (3 entries, 5 expected): entries were cut off the end" in result.reason
    result = AuditLog(db).verify(expected_count=count)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_rewritten_chain_needs_the_anchor(db, path):
    log = filled(db, 4)
    count, head = log.head()
    # An attacker who edits entry 2 and recomputes every later hash leaves a self-consistent chain.
    tamper(path, "UPDATE audit_log SET status = 500 WHERE seq = 2")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        columns = [c[1] for c in connection.execute("PRAGMA table_info(audit_log)")]
        prev = rows[0][columns.index("hash")]
        for row in rows[1:]:
            fields = dict(zip(columns, row))
            fields["outcome"] = json.loads(fields["outcome"])
            digest = entry_hash(prev, fields)
            connection.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[0]))
            prev = digest
    connection.close()
    assert AuditLog(db).verify().ok
    result = AuditLog(db).verify(expected_head=head, expected_count=count)
    assert not result.ok and "chain was rewritten" in result.reason


def test_anchor_accepts_later_growth(db):
    log = filled(db, 3)
    count, head = log.head()
    log.append(predict_event(9))
    assert log.verify(expected_head=head, expected_count=count).ok
    result = log.verify(expected_head=head, expected_count=2)
    assert not result.ok and "recorded as entry 2" in result.reason
    with pytest.raises(InvalidParameterError, match="'expected_head' parameter of AuditLog.verify"):
        log.verify(expected_head="not-a-hash")


def test_removed_triggers_are_restored_and_reported(db, path):
    filled(db, 2)
    tamper(path)  # drops the triggers, changes nothing
    log = AuditLog(db)
    assert log.restored_triggers == ("audit_log_no_update", "audit_log_no_delete")
    result = log.verify()
    assert result.ok and len(result.warnings) == 2 and "audit_log_no_update was missing" in result.warnings[0]
    assert AuditLog(db).restored_triggers == ()


def test_entries_paging(db):
    log = filled(db, 7)
    assert [e.seq for e in log.entries(limit=3)] == [5, 6, 7]
    assert [e.seq for e in log.entries(limit=3, since=2)] == [3, 4, 5]
    assert log.entries(limit=3, since=7) == []
    with pytest.raises(InvalidParameterError, match="'limit' parameter of AuditLog.entries"):
        log.entries(limit=0)


def test_concurrent_appends_keep_one_chain(db):
    log = AuditLog(db)
    errors = []

    def work(worker):
        try:
            for i in range(15):
                log.append(predict_event(worker * 100 + i))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = log.verify()
    assert (result.ok, result.n_entries) == (True, 120)


def test_concurrent_appends_from_separate_engines_rely_on_the_database_lock(path):
    # Each thread has its own engine and its own Python lock, as separate uvicorn worker processes would: only
    # BEGIN IMMEDIATE keeps two appenders from reading the same head and forking the chain.
    AuditLog(store.engine(f"sqlite:///{path}"))
    errors = []

    def work(worker):
        try:
            log = AuditLog(store.engine(f"sqlite:///{path}"))
            log._lock = threading.Lock()
            for i in range(10):
                log.append(predict_event(worker * 100 + i))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = AuditLog(store.engine(f"sqlite:///{path}")).verify()
    assert (result.ok, result.n_entries) == (True, 80)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="medai")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_verify_exit_codes(db, path, capsys):
    log = filled(db, 4)
    count, head = log.head()
    state = str(path.parent)
    assert _cli(["audit", "verify", "--state", state]) == 0
    captured = capsys.readouterr()
    assert "Audit log intact: 4 entries" in captured.out and head in captured.out
    assert _cli(["audit", "verify", "--db", f"sqlite:///{path}", "--expect-head", head, "--expect-count",
                 str(count)]) == 0
    capsys.readouterr()

    tamper(path, "UPDATE audit_log SET n_records = 99 WHERE seq = 2")
    assert _cli(["audit", "verify", "--state", state]) == 1
    captured = capsys.readouterr()
    assert "TAMPERED at entry 2" in captured.out and "does not match its hash" in captured.out
    assert "audit_log_no_update was missing" in captured.err


def test_cli_verify_detects_a_cut_tail_with_the_anchor(db, path, capsys):
    log = filled(db, 4)
    count, head = log.head()
    tamper(path, "DELETE FROM audit_log WHERE seq = 4")
    assert _cli(["audit", "verify", "--state", str(path.parent)]) == 0
    assert _cli(["audit", "verify", "--state", str(path.parent), "--expect-head", head, "--expect-count",
                 str(count)]) == 1
    assert "TAMPERED at entry 4" in capsys.readouterr().out


def test_cli_verify_of_a_missing_database_is_an_error(tmp_path):
    with pytest.raises(InvalidParameterError, match="No medai database at"):
        _cli(["audit", "verify", "--state", str(tmp_path / "nowhere")])


def test_cli_show(db, path, capsys):
    filled(db, 3)
    assert _cli(["audit", "show", "--state", str(path.parent), "--limit", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2, 3]
    assert _cli(["audit", "show", "--state", str(path.parent)]) == 0
    out = capsys.readouterr().out
    assert "pneumonia-cxr" in out and "tok_1a2b3c4d" in out and "predict" in out
    AuditLog(db).append(predict_event(outcome={"decisions": {"[bold]x[/]": 1}}))
    assert _cli(["audit", "show", "--state", str(path.parent), "--limit", "1"]) == 0
    assert '"[bold]x[/]":1' in capsys.readouterr().out  # printed as written, not as rich markup
