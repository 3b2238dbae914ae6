"""Append-only, hash-chained audit log of every prediction and every administrative action.

One row per event (table ``audit_log``): when, who (the token's public id — never the token), what (action, model
id / version / sha256), on what (the SHA-256 of the request body and the number of records — never the body or
any patient data), how it ended (HTTP status and an outcome made only of counts, e.g. decisions per class and
the number referred). Each row carries ``prev_hash`` (the previous row's hash) and
``hash = sha256(prev_hash + canonical JSON of the row)``; the first row's ``prev_hash`` is 64 zeros.

What protects it:

* the database refuses ``UPDATE`` and ``DELETE`` on the table (SQLite triggers that ``RAISE(ABORT)``; a PostgreSQL
  trigger function) — this stops the service and careless hands, not someone who can drop the trigger;
* :meth:`AuditLog.verify` recomputes the chain, so a modified, deleted, inserted or re-ordered row is found even
  when the trigger was dropped first;
* a chain cannot show that rows were cut off its end, nor that someone recomputed every hash after an edit: record
  the head (``medai audit verify`` prints it) somewhere the database's writers cannot change, and pass it back
  (``--expect-head``, ``--expect-count``) to detect both.

Appends are serialised — a process-wide lock plus a transaction that takes the database write lock first (SQLite
``BEGIN IMMEDIATE``, PostgreSQL ``LOCK TABLE``) — so concurrent workers never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column, Connection, Engine, Integer, MetaData, String, Table, Text, insert, inspect, select, text,
)

from medai.core.errors import DataValidationError, InvalidParameterError, invalid_parameter, unknown_name
from medai.serve import store

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
TABLE = "audit_log"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ACTOR_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_KEY_RE = re.compile(r"^[^\x00-\x1f\x7f]{0,200}$")
_MAX_TEXT = 200
_MAX_OUTCOME_KEYS = 200


class AuditAction(StrEnum):
    PREDICT = "predict"
    CDS_PATIENT_VIEW = "cds_patient_view"     # a CDS Hooks call: a prediction from prefetched FHIR
    PACS_ANALYSE = "pacs_analyse"             # a study analysed from the PACS (DICOMweb)
    REGISTER_MODEL = "register_model"
    RETIRE_MODEL = "retire_model"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"


# The fields a caller gives; seq, time, prev_hash and hash are the log's own. Anything else is refused, so that no
# caller can add a free-text field that ends up holding patient data.
EVENT_FIELDS = ("actor", "role", "action", "target", "model_id", "model_version", "model_sha256", "input_sha256",
                "n_records", "status", "outcome")
# The hashed fields, in the order of the table; the canonical JSON sorts keys, so the order only serves reading.
ENTRY_FIELDS = ("seq", "time") + EVENT_FIELDS


@dataclass(frozen=True)
class AuditEntry:
    """One audit row.

    Attributes:
        seq: 1, 2, 3, ... without gaps.
        time: ISO 8601 UTC, microseconds (``2026-11-26T10:00:00.123456Z``).
        actor: who: a token id (``tok_1a2b3c4d``) or ``cli`` for a command run on the server.
        role: the actor's role (``clinician``, ``admin``) or None.
        action: an :class:`AuditAction`.
        target: the token id or other non-patient resource the action applied to (token create/revoke), or None.
        model_id, model_version, model_sha256: the model that answered (None when no model was involved).
        input_sha256: SHA-256 (hex) of the request body, computed by the caller; the body itself is never stored.
        n_records: records in the request.
        status: the HTTP status returned (None for command-line actions).
        outcome: counts only, e.g. ``{"decisions": {"pneumonia": 2, "normal": 5}, "referred": 1}``.
        prev_hash: ``hash`` of entry ``seq - 1`` (64 zeros for the first).
        hash: sha256(prev_hash + canonical JSON of the fields above but prev_hash).
    """

    seq: int
    time: str
    actor: str
    role: str | None
    action: str
    target: str | None
    model_id: str | None
    model_version: str | None
    model_sha256: str | None
    input_sha256: str | None
    n_records: int | None
    status: int | None
    outcome: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`AuditLog.verify` found.

    Attributes:
        ok: True when the chain is intact (and matches the expected head/count when given).
        n_entries: rows read.
        first_bad_seq: the first entry that fails (for a deleted row: the missing seq; for a cut-off tail: the
            first missing seq when the expected count is known), None when ok or unknown.
        reason: why it failed, None when ok.
        head_hash: the hash of the last row (64 zeros for an empty log): record it elsewhere as an anchor. When
            verification fails, the hash of the last row that verified.
        warnings: problems that are not tampering with the rows, e.g. an append-only trigger that had been removed.
    """

    ok: bool
    n_entries: int
    first_bad_seq: int | None
    reason: str | None
    head_hash: str = GENESIS_HASH
    warnings: tuple[str, ...] = field(default_factory=tuple)


metadata = MetaData()
audit_table = Table(
    TABLE, metadata,
    # Assigned by append (last + 1), not by the database: a sequence can skip values after a rollback, and a gap
    # must mean a deleted row.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(16), nullable=True),
    Column("action", String(32), nullable=False),
    Column("target", String(_MAX_TEXT), nullable=True),
    Column("model_id", String(_MAX_TEXT), nullable=True),
    Column("model_version", String(_MAX_TEXT), nullable=True),
    Column("model_sha256", String(64), nullable=True),
    Column("input_sha256", String(64), nullable=True),
    Column("n_records", Integer, nullable=True),
    Column("status", Integer, nullable=True),
    Column("outcome", Text, nullable=False),          # canonical JSON text (a JSON type could re-order keys)
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

_SQLITE_TRIGGERS = {
    "audit_log_no_update": f"CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON {TABLE} "
                           "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END",
    "audit_log_no_delete": f"CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON {TABLE} "
                           "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed'); END",
}
# PostgreSQL (not exercised by the test suite: no server or driver there). No '%' or ':name' in the text, which
# drivers and SQLAlchemy would read as parameters. TRUNCATE bypasses row triggers, hence the statement trigger.
_POSTGRES_FUNCTION = (
    "CREATE OR REPLACE FUNCTION medai_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$ "
    "BEGIN RAISE EXCEPTION USING MESSAGE = 'audit_log is append-only: ' || TG_OP || ' is not allowed'; END; $body$"
)
_POSTGRES_TRIGGERS = {
    "audit_log_no_update_delete": f"CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE} "
                                  "FOR EACH ROW EXECUTE FUNCTION medai_audit_append_only()",
    "audit_log_no_truncate": f"CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {TABLE} "
                             "FOR EACH STATEMENT EXECUTE FUNCTION medai_audit_append_only()",
}

# One lock per database in this process: threads of one worker queue here instead of spinning on the database lock.
# Built once: the append path runs on every request, and building a statement costs more than executing it.
_LAST_ENTRY = select(audit_table.c.seq, audit_table.c.hash).order_by(audit_table.c.seq.desc()).limit(1)
_INSERT_ENTRY = insert(audit_table)
_APPEND_LOCKS: dict[str, threading.Lock] = {}
_APPEND_LOCKS_GUARD = threading.Lock()


def canonical_json(data: Any) -> str:
    """Sorted keys, no spaces, ASCII only: one byte string per value, whatever wrote it."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256(prev_hash + canonical JSON of the entry's fields but prev_hash and hash), hex."""
    hashed = {name: fields[name] for name in ENTRY_FIELDS}
    return hashlib.sha256((prev_hash + canonical_json(hashed)).encode("ascii")).hexdigest()


class AuditLog:
    """The audit log in the service database (table ``audit_log`` and its append-only triggers, created if absent).

    Opening an existing log whose append-only triggers are missing re-creates them, logs a warning and reports it in
    :meth:`verify`'s warnings: someone with write access to the database removed them.

    Args:
        engine: from :func:`medai.serve.store.engine`; shared with the token store.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.restored_triggers: tuple[str, ...] = ()
        with _APPEND_LOCKS_GUARD:
            self._lock = _APPEND_LOCKS.setdefault(engine.url.render_as_string(hide_password=False), threading.Lock())
        existed = inspect(engine).has_table(TABLE)
        metadata.create_all(engine, checkfirst=True)
        missing = self._install_triggers()
        if existed and missing:
            self.restored_triggers = tuple(missing)
            logger.warning("The append-only triggers %s of the audit log were missing and have been re-created; "
                           "run `medai audit verify`.", ", ".join(missing))

    def _install_triggers(self) -> list[str]:
        with store.write_transaction(self.engine) as connection:
            if self.dialect == "sqlite":
                present = set(connection.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
                    {"table": TABLE}).scalars())
                missing = [name for name in _SQLITE_TRIGGERS if name not in present]
                for name in missing:
                    connection.exec_driver_sql(_SQLITE_TRIGGERS[name])
            else:  # postgresql (store.engine admits no other backend)
                present = set(connection.execute(text(
                    "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE c.relname = :table AND NOT t.tgisinternal"), {"table": TABLE}).scalars())
                missing = [name for name in _POSTGRES_TRIGGERS if name not in present]
                if missing:
                    connection.execute(text(_POSTGRES_FUNCTION))
                for name in missing:
                    connection.execute(text(_POSTGRES_TRIGGERS[name]))
        return missing

    def append(self, event: dict[str, Any], *, connection: Connection | None = None) -> AuditEntry:
        """Append one event; returns the stored entry with its seq, time and hashes.

        Args:
            connection: a connection of :meth:`transaction` to append within (None: a transaction of its own).
            event: ``actor`` and ``action`` (required); ``role``, ``target``, ``model_id``, ``model_version``,
                ``model_sha256``, ``input_sha256``, ``n_records``, ``status``, ``outcome`` (optional; see
                :class:`AuditEntry`). No other key is accepted.

        Raises:
            InvalidParameterError: an unknown key, a malformed value, or the full token given as the actor.
            DataValidationError: an outcome that is not made of counts (it could hold patient data).
            UnknownNameError: an unknown action.
        """
        fields = _validated(event)
        if connection is not None:
            return self._append(connection, fields)
        with self.transaction() as connection:
            return self._append(connection, fields)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction with this log's appender lock held: rows written in it (a drift record) commit
        atomically with the entries appended in it (``append(event, connection=...)``), at the cost of one commit.

        The lock is taken before the database's write lock, as :meth:`append` does, so threads queue here instead
        of in SQLite's sleeping busy handler."""
        with self._lock, store.write_transaction(self.engine) as connection:
            yield connection

    def _append(self, connection: Connection, fields: dict[str, Any]) -> AuditEntry:
        if self.dialect == "postgresql":
            # Conflicts with itself (one appender at a time) but not with readers.
            connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE"))
        last = connection.execute(_LAST_ENTRY).first()
        seq, prev_hash = (last.seq + 1, last.hash) if last is not None else (1, GENESIS_HASH)
        # Taken inside the lock, so times never go backwards along the chain (barring a clock step).
        fields = {"seq": seq, "time": _utc_now(), **fields}
        digest = entry_hash(prev_hash, fields)
        connection.execute(_INSERT_ENTRY, {**fields, "outcome": canonical_json(fields["outcome"]),
                                           "prev_hash": prev_hash, "hash": digest})
        return AuditEntry(**fields, prev_hash=prev_hash, hash=digest)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; ``(0, 64 zeros)`` for an empty log."""
        with self.engine.connect() as connection:
            last = connection.execute(select(audit_table.c.seq, audit_table.c.hash)
                                      .order_by(audit_table.c.seq.desc()).limit(1)).first()
        return (last.seq, last.hash) if last is not None else (0, GENESIS_HASH)

    def entries(self, limit: int = 50, since: int | None = None) -> list[AuditEntry]:
        """Entries in seq order: the ``limit`` most recent, or with ``since`` the first ``limit`` after seq ``since``
        (a cursor for paging through the whole log)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise invalid_parameter("limit", "AuditLog.entries", "an int in [1, 10000]", limit)
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            raise invalid_parameter("since", "AuditLog.entries", "None or a seq >= 0", since)
        query = select(audit_table)
        if since is None:
            query = query.order_by(audit_table.c.seq.desc()).limit(limit)
        else:
            query = query.where(audit_table.c.seq > since).order_by(audit_table.c.seq).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        entries = [_entry(row) for row in rows]
        return sorted(entries, key=lambda entry: entry.seq)

    def verify(self, expected_head: str | None = None, expected_count: int | None = None) -> VerifyResult:
        """Recompute the chain from the first row; optionally check it against an anchor recorded earlier.

        Detects a modified row (its content no longer matches its hash), a deleted row (a gap in seq), an inserted
        or re-ordered row (a seq out of order, or a ``prev_hash`` that is not the previous row's hash). A chain
        cannot reveal rows cut off its end, nor a rewrite that recomputed every later hash: that takes the anchor.

        Args:
            expected_head: a head hash printed by an earlier verify. The log may have grown since, but that hash
                must still be in the chain.
            expected_count: the entry count printed with that head (the log must have at least that many, and the
                head must be entry ``expected_count``).
        """
        if expected_head is not None and not _SHA256_RE.match(expected_head):
            raise invalid_parameter("expected_head", "AuditLog.verify", "64 lowercase hex characters (the head hash "
                                    "printed by `medai audit verify`)", expected_head)
        if expected_count is not None and (isinstance(expected_count, bool) or not isinstance(expected_count, int)
                                           or expected_count < 0):
            raise invalid_parameter("expected_count", "AuditLog.verify", "None or an int >= 0", expected_count)
        warnings = tuple(f"The append-only trigger {name} was missing (someone with write access to the database "
                         "removed it); it has been re-created." for name in self.restored_triggers)
        n_entries, prev_hash, anchor_seq = 0, GENESIS_HASH, 0 if expected_head == GENESIS_HASH else None

        def failed(seq: int | None, reason: str) -> VerifyResult:
            return VerifyResult(False, n_entries, seq, reason, prev_hash, warnings)

        with self.engine.connect() as connection:
            rows = connection.execution_options(stream_results=True, yield_per=1000).execute(
                select(audit_table).order_by(audit_table.c.seq)).mappings()
            for row in rows:
                expected_seq = n_entries + 1
                n_entries += 1
                seq = row["seq"]
                if seq > expected_seq:
                    return failed(expected_seq, f"entry {expected_seq} is missing: the log jumps from entry "
                                  f"{expected_seq - 1} to {seq} (rows deleted)")
                if seq < expected_seq:
                    return failed(seq, f"entry with seq {seq} where {expected_seq} was expected (a row was inserted)")
                if row["prev_hash"] != prev_hash:
                    return failed(seq, f"prev_hash of entry {seq} is not the hash of entry {seq - 1}: an entry was "
                                  "removed, inserted or re-ordered here, or the previous entry was rewritten")
                try:
                    digest = entry_hash(prev_hash, _entry(row).as_dict())
                except (ValueError, TypeError):
                    digest = None
                if digest != row["hash"]:
                    return failed(seq, f"the content of entry {seq} does not match its hash (the row was modified)")
                prev_hash = row["hash"]
                if expected_head is not None and prev_hash == expected_head:
                    anchor_seq = seq
        if expected_head is not None and anchor_seq is None:
            truncated = expected_count is not None and n_entries < expected_count
            return failed(n_entries + 1 if truncated else None,
                          f"the recorded head {expected_head[:16]}... is not in the log ({n_entries} entries"
                          + (f", {expected_count} expected" if expected_count is not None else "")
                          + "): entries were cut off the end, or the chain was rewritten")
        if expected_count is not None:
            if n_entries < expected_count:
                return failed(n_entries + 1, f"the log has {n_entries} entries but {expected_count} were recorded: "
                              "entries were cut off the end")
            if anchor_seq is not None and anchor_seq != expected_count:
                return failed(anchor_seq, f"the recorded head is entry {anchor_seq} here, but was recorded as entry "
                              f"{expected_count}: the chain was rewritten")
        return VerifyResult(True, n_entries, None, None, prev_hash, warnings)


def _entry(row) -> AuditEntry:
    values = {name: row[name] for name in ENTRY_FIELDS}
    values["outcome"] = json.loads(row["outcome"])
    return AuditEntry(**values, prev_hash=row["prev_hash"], hash=row["hash"])


def _utc_now() -> str:
    from medai.serve.auth import utc_now

    return utc_now()


def _validated(event: dict[str, Any]) -> dict[str, Any]:
    owner = "AuditLog.append"
    if not isinstance(event, dict):
        raise invalid_parameter("event", owner, "a dict of audit fields", type(event).__name__)
    unknown = sorted(set(event) - set(EVENT_FIELDS))
    if unknown:
        raise InvalidParameterError(
            f"The audit event has unknown field(s) {', '.join(map(repr, unknown))}. Accepted: {', '.join(EVENT_FIELDS)}"
            " (seq, time and hashes are set by the log; request bodies and patient data are never stored).")
    fields: dict[str, Any] = {name: event.get(name) for name in EVENT_FIELDS}
    actor = fields["actor"]
    if isinstance(actor, str) and actor.startswith("medai_"):
        # The token itself would make the log a store of live credentials; the message does not repeat it.
        raise InvalidParameterError("The audit actor looks like an API token. Pass the token's public id "
                                    "(Principal.token_id, 'tok_...'), never the token.")
    if not isinstance(actor, str) or not _ACTOR_RE.match(actor):
        raise invalid_parameter("actor", owner, "a token id ('tok_...') or 'cli' (1-64 of A-Z a-z 0-9 _ . : @ -)",
                                actor)
    try:
        fields["action"] = AuditAction(fields["action"]).value
    except ValueError:
        raise unknown_name("audit action", str(fields["action"]), [a.value for a in AuditAction]) from None
    for name in ("role", "target", "model_id", "model_version"):
        value = fields[name]
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT
                                  or any(ord(c) < 32 for c in value)):
            raise invalid_parameter(name, owner, f"None or 1 to {_MAX_TEXT} printable characters", str(value)[:80])
    for name in ("model_sha256", "input_sha256"):
        value = fields[name]
        if value is not None and (not isinstance(value, str) or not _SHA256_RE.match(value)):
            raise invalid_parameter(name, owner, "None or a SHA-256 as 64 lowercase hex characters", str(value)[:80])
    if fields["n_records"] is not None and (not _is_int(fields["n_records"]) or fields["n_records"] < 0):
        raise invalid_parameter("n_records", owner, "None or an int >= 0", fields["n_records"])
    if fields["status"] is not None and (not _is_int(fields["status"]) or not 100 <= fields["status"] <= 599):
        raise invalid_parameter("status", owner, "None or an HTTP status code (100-599)", fields["status"])
    fields["outcome"] = _validated_outcome({} if fields["outcome"] is None else fields["outcome"])
    return fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validated_outcome(outcome: Any, depth: int = 0) -> dict[str, Any]:
    # Counts only: a string or a float could carry a note, a name or a measurement. Keys are decision labels chosen
    # by the model's authors (multi-label: findings joined by ';', possibly empty), and are not echoed in the
    # messages in case a caller passed something else.
    if not isinstance(outcome, dict):
        raise DataValidationError("The audit outcome must be a dict of counts, e.g. {'decisions': {'pneumonia': 2}, "
                                  f"'referred': 1}}. Got a {type(outcome).__name__}.")
    if len(outcome) > _MAX_OUTCOME_KEYS:
        raise DataValidationError(f"The audit outcome has {len(outcome)} keys; at most {_MAX_OUTCOME_KEYS} "
                                  "(counts per decision class) are accepted.")
    result: dict[str, Any] = {}
    for key, value in outcome.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise DataValidationError("An audit outcome key is not a label of at most 200 printable characters. "
                                      "Use decision labels (class names) or 'referred' as keys.")
        if isinstance(value, dict) and depth == 0:
            result[key] = _validated_outcome(value, depth + 1)
        elif _is_int(value) and value >= 0:
            result[key] = value
        else:
            raise DataValidationError(
                f"The audit outcome value of '{key}' is a {type(value).__name__}; the audit log stores counts only "
                "(ints >= 0, nested at most one level), never values that could be patient data.")
    return result


# ----------------------------------------------------------------------------------------------------- command line

def add_audit_parser(subparsers):
    """Add ``audit verify|show`` to an argparse sub-parser collection."""
    parser = subparsers.add_parser("audit", help="verify and read the audit log of the service")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = commands.add_parser("verify", help="recompute the hash chain; exit 0 when intact, 1 when tampered")
    store.add_database_arguments(verify)
    verify.add_argument("--expect-head", metavar="HASH", help="a head hash recorded earlier (outside the database): "
                        "detects entries cut off the end or a rewritten chain")
    verify.add_argument("--expect-count", metavar="N", type=int, help="the entry count recorded with that head")
    verify.set_defaults(handler=audit_verify_command)

    show = commands.add_parser("show", help="print audit entries (no patient data is stored in them)")
    store.add_database_arguments(show)
    show.add_argument("--limit", type=int, default=50, help="how many entries (default 50, the most recent)")
    show.add_argument("--since", type=int, metavar="SEQ", help="the entries after this seq, oldest first")
    show.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    show.set_defaults(handler=audit_show_command)
    return parser


def _consoles():
    import sys

    from rich.console import Console

    # Created per call so that they write to the current sys.stdout / sys.stderr (tests capture them). Not a terminal
    # (pipes, CI logs): wide enough for the tables instead of rich's default of 80 columns.
    return (Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200),
            Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty()))


def audit_verify_command(args) -> int:
    out, err = _consoles()
    log = AuditLog(store.engine(store.database_url(args.state, args.db), create=False))
    result = log.verify(expected_head=args.expect_head, expected_count=args.expect_count)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if not result.ok:
        where = f"entry {result.first_bad_seq}" if result.first_bad_seq is not None else "the end of the log"
        out.print(f"[red]Audit log TAMPERED[/] at {where}: {result.reason}. Entries read: {result.n_entries}.")
        return 1
    noun = "entry" if result.n_entries == 1 else "entries"
    out.print(f"Audit log intact: {result.n_entries} {noun}. Head: entry {result.n_entries} hash "
              f"{result.head_hash}")
    err.print("Record the head hash and count outside this database (a ticket, a write-once store) and check them "
              "later with --expect-head HASH --expect-count N: a chain alone cannot show entries cut off its end.")
    return 0


def audit_show_command(args) -> int:
    from rich.markup import escape
    from rich.table import Table as RichTable

    out, _ = _consoles()
    log = AuditLog(store.engine(store.database_url(args.state, args.db), create=False))
    entries = log.entries(limit=args.limit, since=args.since)
    if args.json:
        for entry in entries:
            out.print(json.dumps(entry.as_dict(), sort_keys=True), markup=False, highlight=False)
        return 0
    table = RichTable("seq", "time (UTC)", "actor", "role", "action", "model / target", "records", "status",
                      "outcome", "hash")
    for entry in entries:
        model = f"{entry.model_id} {entry.model_version or ''}".strip() if entry.model_id else (entry.target or "")
        cells = (str(entry.seq), entry.time, entry.actor, entry.role or "", entry.action, model,
                 "" if entry.n_records is None else str(entry.n_records),
                 "" if entry.status is None else str(entry.status),
                 canonical_json(entry.outcome) if entry.outcome else "", entry.hash[:12])
        table.add_row(*(escape(cell) for cell in cells))  # a '[' in a label must not be read as rich markup
    out.print(table)
    return 0


__all__ = ["AuditAction", "AuditEntry", "AuditLog", "GENESIS_HASH", "VerifyResult", "add_audit_parser",
           "canonical_json", "entry_hash"]
