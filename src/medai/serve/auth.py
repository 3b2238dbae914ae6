"""API tokens with roles, stored hashed.

A token is ``medai_`` + 43 URL-safe characters (256 random bits from :mod:`secrets`); the fixed prefix lets secret
scanners recognise a leaked one. The client sends it as ``Authorization: Bearer TOKEN``. The database keeps only
its SHA-256, beside a short public id (``tok_1a2b3c4d``) that appears in listings and in the audit log — the
token itself is printed once, when created, and never again.

Roles (:class:`Role`) and what they may do (:func:`allowed`):

==========  ====================================================
clinician   ``read`` (models, model cards, health of a model), ``predict``
admin       everything: ``read``, ``predict``, ``admin`` (register and retire models, tokens, audit log)
==========  ====================================================

Command line (wired by :func:`add_token_parser`)::

    medai token create --role clinician --name "ward 3 workstation"   # prints the token once
    medai token list
    medai token revoke tok_1a2b3c4d

A running service remembers a token it has verified for :data:`CACHE_TTL_S` seconds (by its hash, in memory), so a
request costs no database read: a token revoked from another process stops working within that time (at once when
revoked through the same :class:`TokenStore`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Column, Engine, Index, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from medai.core.errors import invalid_parameter, unknown_name
from medai.serve import store

TOKEN_PREFIX = "medai_"
TOKEN_ID_PREFIX = "tok_"
# token_urlsafe(32) gives 43 characters; anything much longer is not one of ours, and is refused before hashing.
MAX_TOKEN_CHARS = 128
#: Seconds a verified token is remembered (see the module docstring); at most CACHE_SIZE tokens are remembered.
CACHE_TTL_S = 5.0
CACHE_SIZE = 1024
MAX_NAME_CHARS = 80
_TOKEN_RE = re.compile(r"^medai_[A-Za-z0-9_-]{20,120}$")
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,80}$")


class Role(StrEnum):
    CLINICIAN = "clinician"
    ADMIN = "admin"


class Action(StrEnum):
    READ = "read"
    PREDICT = "predict"
    ADMIN = "admin"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.CLINICIAN: frozenset({Action.READ, Action.PREDICT}),
    Role.ADMIN: frozenset(Action),
}


def allowed(role: Role | str, action: Action | str) -> bool:
    """Whether ``role`` may perform ``action`` (admin may do everything).

    Raises:
        UnknownNameError: ``role`` or ``action`` is not a known name (a typo must not silently deny or allow).
    """
    return _action(action) in PERMISSIONS[_role(role)]


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise unknown_name("role", str(role), [r.value for r in Role]) from None


def _action(action: Action | str) -> Action:
    try:
        return Action(action)
    except ValueError:
        raise unknown_name("action", str(action), [a.value for a in Action]) from None


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the token's public id, role and label (never the token)."""

    token_id: str
    role: Role
    name: str | None


@dataclass(frozen=True)
class TokenInfo:
    """One stored token as listed to an admin: everything but the secret (which is not stored)."""

    token_id: str
    role: Role
    name: str | None
    created: str               # ISO 8601 UTC
    revoked_at: str | None     # ISO 8601 UTC; None while the token is valid


metadata = MetaData()
tokens_table = Table(
    "api_tokens", metadata,
    Column("token_id", String(32), primary_key=True),
    Column("token_sha256", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(MAX_NAME_CHARS), nullable=True),
    Column("created", String(40), nullable=False),
    Column("revoked_at", String(40), nullable=True),
    Index("ix_api_tokens_token_sha256", "token_sha256", unique=True),
)


def hash_token(token: str) -> str:
    """SHA-256 (hex) of a token, the only form in which tokens are stored.

    A fast unsalted hash is the standard for high-entropy random secrets (GitHub and PyPI tokens are stored the same
    way): a slow password hash protects guessable passwords, but 256 random bits cannot be brute-forced from their
    hash, and a per-request bcrypt would cost ~100 ms of CPU on every API call.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_bearer(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer TOKEN`` header value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credentials = credentials.strip()
    return credentials or None


def utc_now() -> str:
    """Now as ISO 8601 UTC with microseconds, e.g. ``2026-11-26T10:00:00.123456Z`` (sorts as text)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TokenStore:
    """API tokens with roles in the service database (table ``api_tokens``, created if absent).

    Args:
        engine: from :func:`medai.serve.store.engine`; shared with the audit log.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        metadata.create_all(engine, checkfirst=True)
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._cache_lock = threading.Lock()

    def create(self, role: Role | str, name: str | None = None) -> tuple[str, str]:
        """Create a token; returns ``(token_id, token)``. The token is not stored and cannot be shown again.

        Args:
            role: ``clinician`` or ``admin``.
            name: an optional label for listings ("ward 3 workstation"); at most 80 printable characters. It is
                not a secret and must not hold patient data.

        Raises:
            UnknownNameError: unknown role.
            InvalidParameterError: the name is empty, too long or has control characters.
        """
        role = _role(role)
        if name is not None and not _NAME_RE.match(name):
            raise invalid_parameter("name", "TokenStore.create", f"1 to {MAX_NAME_CHARS} printable characters "
                                    "(a label such as 'ward 3 workstation')", name[:100])
        for _ in range(5):  # 32-bit ids collide once in ~65,000 tokens: draw again rather than fail
            token_id = TOKEN_ID_PREFIX + secrets.token_hex(4)
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            try:
                with store.write_transaction(self.engine) as connection:
                    connection.execute(insert(tokens_table).values(
                        token_id=token_id, token_sha256=hash_token(token), role=role.value, name=name,
                        created=utc_now(), revoked_at=None))
                return token_id, token
            except IntegrityError:
                continue
        raise RuntimeError("Could not draw a unique token id in 5 tries; the api_tokens table may be corrupted.")

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal a token belongs to; None for a missing, malformed, unknown or revoked token."""
        if not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.match(token):
            return None
        digest = hash_token(token)
        now = time.monotonic()
        with self._cache_lock:
            cached = self._verified.get(digest)
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            return cached[1]
        with self.engine.connect() as connection:
            row = connection.execute(
                select(tokens_table).where(tokens_table.c.token_sha256 == digest)).mappings().first()
        # The lookup is by hash, so response time says nothing about how close a guess was; comparing the digests
        # again in constant time keeps that true even if a database compared case-insensitively or by prefix.
        if row is None or not hmac.compare_digest(row["token_sha256"], digest) or row["revoked_at"] is not None:
            return None
        principal = Principal(token_id=row["token_id"], role=Role(row["role"]), name=row["name"])
        with self._cache_lock:
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
            self._verified[digest] = (now, principal)
        return principal

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token by its public id (idempotent: revoking twice keeps the first time).

        Raises:
            UnknownNameError: no token has that id (the message lists the known ids).
        """
        with self._cache_lock:
            self._verified.clear()
        with store.write_transaction(self.engine) as connection:
            connection.execute(update(tokens_table).where(
                (tokens_table.c.token_id == token_id) & tokens_table.c.revoked_at.is_(None)).values(
                revoked_at=utc_now()))
            row = connection.execute(
                select(tokens_table).where(tokens_table.c.token_id == token_id)).mappings().first()
            if row is None:
                known = connection.execute(select(tokens_table.c.token_id)).scalars().all()
                raise unknown_name("token id", token_id, known)
        return _info(row)

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first, without secrets (only hashes are stored, and these are not returned)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tokens_table).order_by(tokens_table.c.created, tokens_table.c.token_id)).mappings().all()
        return [_info(row) for row in rows]


def _info(row) -> TokenInfo:
    return TokenInfo(token_id=row["token_id"], role=Role(row["role"]), name=row["name"], created=row["created"],
                     revoked_at=row["revoked_at"])


# ----------------------------------------------------------------------------------------------------- command line

def add_token_parser(subparsers):
    """Add ``token create|list|revoke`` to an argparse sub-parser collection."""
    parser = subparsers.add_parser("token", help="create, list and revoke API tokens (roles: clinician, admin)")
    commands = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = commands.add_parser("create", help="create a token; it is printed once (standard output)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role],
                        help="clinician: read and predict; admin: also register/retire models and manage tokens")
    create.add_argument("--name", help="a label shown in listings, e.g. 'ward 3 workstation' (no patient data)")
    store.add_database_arguments(create)
    create.set_defaults(handler=token_create_command)

    listing = commands.add_parser("list", help="list tokens (ids, roles, names; never the secrets)")
    store.add_database_arguments(listing)
    listing.set_defaults(handler=token_list_command)

    revoke = commands.add_parser("revoke", help="revoke a token by its id (tok_...)")
    revoke.add_argument("token_id", help="the token's public id, as shown by `medai token list`")
    store.add_database_arguments(revoke)
    revoke.set_defaults(handler=token_revoke_command)
    return parser


def _consoles():
    import sys

    from rich.console import Console

    # Created per call so that they write to the current sys.stdout / sys.stderr (tests capture them). Not a terminal
    # (pipes, CI logs): wide enough for the tables instead of rich's default of 80 columns.
    return (Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200),
            Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty()))


def _audit_cli(db: Engine, action: str, target: str, outcome: dict) -> None:
    from medai.serve.audit import AuditLog

    AuditLog(db).append({"actor": "cli", "action": action, "target": target, "outcome": outcome})


def token_create_command(args) -> int:
    out, err = _consoles()
    db = store.engine(store.database_url(args.state, args.db))
    token_id, token = TokenStore(db).create(args.role, name=args.name)
    _audit_cli(db, "token_create", token_id, {})
    # The token alone on standard output, so `medai token create ... > file` captures exactly the secret.
    out.print(token, markup=False)
    err.print(f"Created {args.role} token [bold]{token_id}[/] in {db.url.render_as_string(hide_password=True)}. "
              "[yellow]Store it now: it is shown only this once and kept only as a hash.[/]")
    return 0


def token_list_command(args) -> int:
    from rich.table import Table as RichTable

    out, _ = _consoles()
    db = store.engine(store.database_url(args.state, args.db), create=False)
    table = RichTable("token id", "role", "name", "created (UTC)", "revoked (UTC)")
    for info in TokenStore(db).list():
        table.add_row(info.token_id, info.role.value, info.name or "", info.created, info.revoked_at or "")
    out.print(table)
    return 0


def token_revoke_command(args) -> int:
    _, err = _consoles()
    db = store.engine(store.database_url(args.state, args.db), create=False)
    info = TokenStore(db).revoke(args.token_id)
    _audit_cli(db, "token_revoke", info.token_id, {})
    err.print(f"Token {info.token_id} ({info.role.value}) revoked at {info.revoked_at}; requests with it now get 401.")
    return 0


__all__ = ["Action", "PERMISSIONS", "Principal", "Role", "TokenInfo", "TokenStore", "add_token_parser", "allowed",
           "hash_token", "parse_bearer"]
