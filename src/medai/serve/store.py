"""Where the service keeps its state: one database (API tokens, audit log), reached through SQLAlchemy Core.

The default is a SQLite file ``<state dir>/medai.db``; the state directory is ``--state DIR``, else the
environment variable ``MEDAI_STATE``, else ``./medai-state``. A PostgreSQL server is used by giving its URL
(``postgresql+psycopg://user@host/db``, with ``pip install "psycopg[binary]"``) as ``--db URL`` or, so that the
password is not visible in the process list, in the environment variable ``MEDAI_DATABASE_URL``.

Every table uses only integer and text columns, so the same SQL runs on both: times are ISO 8601 UTC strings, JSON
is stored as canonical text (a database JSON type would re-order keys and break the audit hash chain).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from medai.core.errors import InvalidParameterError, MissingDependencyError

STATE_ENV = "MEDAI_STATE"
DATABASE_URL_ENV = "MEDAI_DATABASE_URL"
DEFAULT_STATE_DIR = Path("medai-state")
DATABASE_FILE = "medai.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# Several uvicorn workers (processes) and threads write the same SQLite file: a writer that finds the file locked
# waits up to this long instead of failing at once with "database is locked".
BUSY_TIMEOUT_S = 30.0
_BEGIN_IMMEDIATE = "medai_begin_immediate"
try:  # POSIX: writers queue on a file lock (see _sqlite_write_lock); elsewhere on SQLite's busy handler alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
_WRITE_LOCKS: dict[str, tuple[threading.Lock, int]] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def state_dir(state: Path | str | None = None) -> Path:
    """The state directory: ``state``, else ``$MEDAI_STATE``, else ``./medai-state`` (not created here)."""
    if state is not None and str(state) != "":
        return Path(state)
    from_env = os.environ.get(STATE_ENV, "")
    return Path(from_env) if from_env else DEFAULT_STATE_DIR


def database_url(state: Path | str | None = None, url: str | None = None) -> str:
    """Resolve the one database URL of this installation.

    Precedence: ``url`` (``--db``), ``state`` (``--state``), ``$MEDAI_DATABASE_URL``, ``$MEDAI_STATE``,
    ``./medai-state``. A state directory gives ``sqlite:///<absolute dir>/medai.db``.
    """
    if url:
        return url
    if state is None or str(state) == "":
        from_env = os.environ.get(DATABASE_URL_ENV, "")
        if from_env:
            return from_env
    return f"sqlite:///{(state_dir(state) / DATABASE_FILE).resolve()}"


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def engine(url: str, *, create: bool = True) -> Engine:
    """A SQLAlchemy engine for ``url``, configured for concurrent service workers.

    SQLite: write-ahead logging (readers never block the writer), a busy timeout of ``BUSY_TIMEOUT_S`` seconds,
    ``synchronous=FULL`` (an audit entry reported written survives a power cut) and transactions that SQLAlchemy
    controls (see :func:`write_transaction`). The parent folder is created with owner-only permissions when
    ``create`` is True.

    Args:
        url: a SQLAlchemy database URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
        create: False for read-type commands (``audit verify``): a missing SQLite file is then an error instead
            of a new, empty — and misleadingly "intact" — database.

    Raises:
        InvalidParameterError: unparseable URL, an unsupported backend, an in-memory SQLite database, or (with
            ``create=False``) a SQLite file that does not exist.
        MissingDependencyError: the backend's driver (psycopg for PostgreSQL) is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidParameterError(
            f"The database URL {safe_url(url)} cannot be parsed. Expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB."
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise InvalidParameterError(
            f"The database URL {safe_url(url)} uses the backend '{backend}'. medai keeps its tokens and audit log in "
            f"{' or '.join(SUPPORTED_BACKENDS)} only (the append-only triggers are written for these)."
        )
    if backend == "sqlite":
        return _sqlite_engine(parsed, create=create)
    try:
        result = create_engine(parsed, pool_pre_ping=True)
    except ImportError as exc:
        raise MissingDependencyError(
            f"The database URL {safe_url(url)} needs the PostgreSQL driver psycopg, which is not installed. Install "
            'it with: pip install "psycopg[binary]" (and use a postgresql+psycopg:// URL).'
        ) from exc
    return result


def _sqlite_engine(parsed, *, create: bool) -> Engine:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or parsed.query.get("mode") == "memory":
        raise InvalidParameterError(
            "An in-memory SQLite database would lose the audit log when the process ends and is not shared between "
            "workers. Give a file: sqlite:///PATH/medai.db, or --state DIR."
        )
    path = Path(database)
    if not path.exists():
        if not create:
            raise InvalidParameterError(
                f"No medai database at {path}. Pass the service's state directory with --state DIR (or set "
                f"{STATE_ENV}), or its database with --db URL."
            )
        # Token hashes and the audit log are nobody else's business: owner-only folder and file when we create them
        # (SQLite gives its -wal and -shm files the permissions of the database file).
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)  # an empty file is a valid, empty SQLite database
    result = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(result, "connect", _sqlite_on_connect)
    event.listen(result, "begin", _sqlite_on_begin)
    return result


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, connection_record) -> None:
    # The sqlite3 module would otherwise open transactions itself, lazily and always DEFERRED, so a transaction that
    # reads the chain head and then writes could be overtaken by another writer; SQLAlchemy emits BEGIN instead
    # (the pysqlite recipe of the SQLAlchemy documentation).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock at once: two appenders cannot both read the same chain head.
    immediate = connection.get_execution_options().get(_BEGIN_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(db: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's write lock from its first statement (SQLite ``BEGIN IMMEDIATE``).

    Commits when the block ends, rolls back on an exception. On PostgreSQL it is an ordinary transaction; callers
    that need mutual exclusion there take a table lock themselves (see :mod:`medai.serve.audit`).
    """
    if db.dialect.name != "sqlite":
        with db.connect() as connection, connection.begin():
            yield connection
        return
    with _sqlite_write_lock(db), db.connect() as connection:
        connection.execution_options(**{_BEGIN_IMMEDIATE: True})
        with connection.begin():
            yield connection


@contextmanager
def _sqlite_write_lock(db: Engine) -> Iterator[None]:
    """Hold this database's write lock across threads and processes (the `--workers` of one service).

    SQLite's own busy handler makes a waiting writer sleep in steps of up to 100 ms, which shows as latency spikes
    when several workers append to the audit log at once. Writers queue here instead: a thread lock within the
    process, then ``flock`` on ``<database>.lock`` between processes, which wakes the next writer as soon as the
    lock is released. BEGIN IMMEDIATE and the busy timeout still guard against writers that do not use it.
    """
    path = str(Path(db.url.database).resolve())
    with _WRITE_LOCKS_GUARD:
        if path not in _WRITE_LOCKS:
            descriptor = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600) if fcntl is not None else -1
            _WRITE_LOCKS[path] = (threading.Lock(), descriptor)
        lock, descriptor = _WRITE_LOCKS[path]
    with lock:
        if descriptor < 0:
            yield
            return
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)


def add_database_arguments(parser) -> None:
    """``--state DIR`` | ``--db URL`` on an argparse parser: where a command finds the service database."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", metavar="DIR", help=f"the service's state directory (default: ${STATE_ENV} or "
                       f"./{DEFAULT_STATE_DIR}); its database is DIR/{DATABASE_FILE}")
    where.add_argument("--db", metavar="URL", help="a database URL instead, e.g. postgresql+psycopg://USER@HOST/DB "
                       f"(or set ${DATABASE_URL_ENV}, which keeps a password out of the process list)")
