"""API tokens: creation, hashed storage, authentication, revocation, roles, and the `medai token` commands."""

from __future__ import annotations

import argparse
import hashlib
import sqlite3

import pytest

from medai.core.errors import InvalidParameterError, MissingDependencyError, UnknownNameError
from medai.serve import store
from medai.serve.audit import AuditLog
from medai.serve.auth import (
    Action, Principal, Role, TokenStore, add_token_parser, allowed, hash_token, parse_bearer,
)


@pytest.fixture
def db(tmp_path):
    return store.engine(store.database_url(tmp_path / "state"))


def test_create_and_authenticate(db, tmp_path):
    tokens = TokenStore(db)
    token_id, token = tokens.create(Role.CLINICIAN, name="ward 3 workstation")
    assert token.startswith("medai_") and len(token) == len("medai_") + 43
    assert token_id.startswith("tok_") and len(token_id) == 12
    assert tokens.authenticate(token) == Principal(token_id, Role.CLINICIAN, "ward 3 workstation")
    # A second token is a different secret with its own identity.
    other_id, other = tokens.create("admin")
    assert other != token and other_id != token_id
    assert tokens.authenticate(other).role is Role.ADMIN


def test_only_the_hash_is_stored(db, tmp_path):
    _, token = TokenStore(db).create("admin")
    raw = (tmp_path / "state" / "medai.db").read_bytes()
    wal = tmp_path / "state" / "medai.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw
    with sqlite3.connect(tmp_path / "state" / "medai.db") as connection:
        stored = connection.execute("SELECT token_sha256 FROM api_tokens").fetchall()
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert hash_token(token) == stored[0][0]


@pytest.mark.parametrize("guess", ["", None, "medai_", "medai_wrong-token-value-of-enough-length",
                                   "Bearer medai_x", "x" * 10_000])
def test_wrong_or_malformed_token_is_refused(db, guess):
    tokens = TokenStore(db)
    tokens.create("clinician")
    assert tokens.authenticate(guess) is None


def test_a_token_one_character_off_is_refused(db):
    tokens = TokenStore(db)
    _, token = tokens.create("clinician")
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert tokens.authenticate(changed) is None


def test_revoke(db):
    tokens = TokenStore(db)
    token_id, token = tokens.create("clinician")
    kept_id, kept = tokens.create("clinician")
    info = tokens.revoke(token_id)
    assert info.revoked_at is not None
    assert tokens.authenticate(token) is None
    assert tokens.authenticate(kept).token_id == kept_id
    assert tokens.revoke(token_id).revoked_at == info.revoked_at  # idempotent: the first revocation time is kept
    with pytest.raises(UnknownNameError, match=f"Unknown token id 'tok_00000000'.*Known: .*{kept_id}"):
        tokens.revoke("tok_00000000")


def test_a_verified_token_is_remembered_for_a_few_seconds_only(db, monkeypatch):
    from medai.serve import auth

    service, cli = TokenStore(db), TokenStore(db)  # the service's store and another process's (`medai token`)
    token_id, token = cli.create("clinician")
    assert service.authenticate(token).token_id == token_id
    cli.revoke(token_id)
    assert service.authenticate(token) is not None  # remembered: no database read for CACHE_TTL_S seconds
    later = auth.time.monotonic() + auth.CACHE_TTL_S + 0.01
    monkeypatch.setattr(auth.time, "monotonic", lambda: later)
    assert service.authenticate(token) is None
    kept_id, kept = service.create("clinician")
    assert service.authenticate(kept).token_id == kept_id
    service.revoke(kept_id)  # revoked through the same store: refused at once
    assert service.authenticate(kept) is None


def test_list_never_returns_secrets(db):
    tokens = TokenStore(db)
    ids = [tokens.create(role)[0] for role in ("clinician", "admin")]
    listed = tokens.list()
    assert [info.token_id for info in listed] == ids
    assert [info.role for info in listed] == [Role.CLINICIAN, Role.ADMIN]
    assert not any("sha256" in field or "token" == field for info in listed for field in vars(info))


def test_bad_role(db):
    with pytest.raises(UnknownNameError, match="Unknown role 'clinican'. Did you mean 'clinician'"):
        allowed("clinican", "read")
    with pytest.raises(UnknownNameError, match="Unknown role 'nurse'.*Known: admin, clinician"):
        TokenStore(db).create("nurse")


def test_bad_name(db):
    with pytest.raises(InvalidParameterError, match="'name' parameter of TokenStore.create must be 1 to 80"):
        TokenStore(db).create("admin", name="x" * 81)
    with pytest.raises(InvalidParameterError, match="'name' parameter"):
        TokenStore(db).create("admin", name="line\nbreak")


def test_permissions():
    assert allowed("clinician", "predict") and allowed(Role.CLINICIAN, Action.READ)
    assert not allowed("clinician", "admin")
    assert all(allowed("admin", action) for action in Action)
    with pytest.raises(UnknownNameError, match="Unknown action 'register'"):
        allowed("admin", "register")


def test_parse_bearer():
    assert parse_bearer("Bearer medai_abc") == "medai_abc"
    assert parse_bearer("bearer   medai_abc ") == "medai_abc"
    assert parse_bearer("Basic dXNlcjpwYXNz") is None
    assert parse_bearer("Bearer") is None
    assert parse_bearer(None) is None


def test_database_url_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(store.DATABASE_URL_ENV, raising=False)
    monkeypatch.setenv(store.STATE_ENV, str(tmp_path / "env-state"))
    assert store.database_url() == f"sqlite:///{tmp_path / 'env-state' / 'medai.db'}"
    assert store.database_url(tmp_path / "flag") == f"sqlite:///{tmp_path / 'flag' / 'medai.db'}"
    monkeypatch.setenv(store.DATABASE_URL_ENV, "postgresql+psycopg://u@h/db")
    assert store.database_url() == "postgresql+psycopg://u@h/db"
    assert store.database_url(tmp_path / "flag").startswith("sqlite:///")  # an explicit --state wins over env
    assert store.database_url(url="sqlite:////x/y.db") == "sqlite:////x/y.db"
    monkeypatch.delenv(store.STATE_ENV)
    monkeypatch.delenv(store.DATABASE_URL_ENV)
    assert store.database_url().endswith("medai-state/medai.db")


def test_engine_refusals(tmp_path):
    with pytest.raises(InvalidParameterError, match="in-memory SQLite database would lose the audit log"):
        store.engine("sqlite://")
    with pytest.raises(InvalidParameterError, match=r"backend 'mysql'"):
        store.engine("mysql://u@h/db")
    with pytest.raises(InvalidParameterError, match=f"No medai database at {tmp_path / 'none.db'}"):
        store.engine(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_postgresql_without_driver_names_the_install(tmp_path):
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("psycopg is installed: the missing-driver message cannot be produced")
    with pytest.raises(MissingDependencyError, match=r'pip install "psycopg\[binary\]"') as caught:
        store.engine("postgresql+psycopg://medai:s3cret@db.example/medai")
    assert "s3cret" not in str(caught.value)  # passwords never reach messages


def test_write_transaction_takes_the_write_lock_at_begin(db, tmp_path):
    TokenStore(db)  # creates the file and tables
    with store.write_transaction(db) as connection:
        connection.exec_driver_sql("SELECT 1")  # no write yet: only BEGIN IMMEDIATE can hold the lock now
        other = sqlite3.connect(tmp_path / "state" / "medai.db", timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()


def _cli(argv):
    parser = argparse.ArgumentParser(prog="medai")
    add_token_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_create_prints_the_token_once(tmp_path, capsys):
    state = str(tmp_path / "state")
    assert _cli(["token", "create", "--role", "clinician", "--name", "ward 3", "--state", state]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert token.startswith("medai_") and "\n" not in token
    assert "shown only this once" in captured.err and token not in captured.err
    db = store.engine(store.database_url(state), create=False)
    principal = TokenStore(db).authenticate(token)
    assert principal is not None and principal.role is Role.CLINICIAN
    # The creation is audited under the token's public id, without the secret.
    (entry,) = AuditLog(db).entries()
    assert (entry.action, entry.actor, entry.target) == ("token_create", "cli", principal.token_id)

    assert _cli(["token", "list", "--state", state]) == 0
    listed = capsys.readouterr().out
    assert principal.token_id in listed and "clinician" in listed and token not in listed

    assert _cli(["token", "revoke", principal.token_id, "--state", state]) == 0
    assert "revoked" in capsys.readouterr().err
    assert TokenStore(db).authenticate(token) is None
    assert [e.action for e in AuditLog(db).entries()] == ["token_create", "token_revoke"]
    assert AuditLog(db).verify().ok


def test_cli_list_of_a_missing_state_dir_is_an_error(tmp_path):
    with pytest.raises(InvalidParameterError, match="No medai database at"):
        _cli(["token", "list", "--state", str(tmp_path / "nowhere")])
    assert not (tmp_path / "nowhere").exists()
