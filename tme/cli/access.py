"""`tme user create|list|disable` and `tme token create|list|revoke`.

They work on the database directly, like `tme db upgrade`, because they are how
access begins: `tme user create admin --role admin` makes the first admin. Each
change is written to the audit log as done from the command line, its row in the
change's own transaction: a change is committed with the row saying who made it, or
not at all.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tme.cli.common import JsonOption, cli_errors, database_errors
from tme.cli.output import console, fail, print_json, print_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from tme.controller.services import audit
    from tme.settings_models import Settings

user_app = typer.Typer(no_args_is_help=True)
token_app = typer.Typer(no_args_is_help=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: database.url setting).")
]
SitesOption = Annotated[str, typer.Option("--sites", help='Comma-separated sites, or "*" for all.')]


@contextmanager
def database(url: str | None, settings: Settings | None = None) -> Iterator[tuple[Engine, Session]]:
    """One transaction on the database at `url`, else at `settings`' (read when not
    given), errors turned into one line."""
    from tme.config import load_settings
    from tme.controller.store.db import check_schema, make_engine, session_scope

    with cli_errors():
        url = url or (settings or load_settings()).database.url
    missing = missing_sqlite_file(url)
    if missing is not None:  # SQLite would make it, empty, where a typo pointed
        fail(f"no database at {missing}: check --db or database.url")
    with cli_errors(), database_errors(url):
        engine = make_engine(url)
        try:
            check_schema(engine)
            with session_scope(engine) as session:
                yield engine, session
        finally:
            engine.dispose()


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist, else None (another
    database, an in-memory one, or a URL database_errors will name)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    path = parsed.database or ""
    if not parsed.drivername.startswith("sqlite") or path in ("", ":memory:"):
        return None
    if path.startswith("file:") or Path(path).exists():
        return None
    return path


def change_settings(url: str | None) -> Settings:
    """The settings of a change, read (even with --db) before it asks for a password or
    changes anything, and its audit key checked against the log: a key that cannot be
    had (its file unreadable, none set in production) or that is not the one the log is
    chained with is one line and exit 1, with nothing asked and nothing changed."""
    from tme.config import load_settings
    from tme.controller.services import audit

    with cli_errors():
        settings = load_settings()
    with database(url, settings) as (_engine, session):
        if not audit.key_fits(session, audit.audit_key(settings)):
            fail(
                "the audit log does not verify under this auth.audit_key: give the"
                " controller's (TME_AUTH__AUDIT_KEY or auth.audit_key_file), or see"
                " `tme audit verify`; nothing changed"
            )
    return settings


@dataclass
class CliChange:
    """A change's transaction (`session`), committed with its audit row by `commit`."""

    change: audit.AuditedChange

    @property
    def session(self) -> Session:
        return self.change.session

    def commit(self, action: str, target: str, details: dict[str, object]) -> None:
        """Append the change's audit row in its transaction and commit both. When the
        row cannot be written, the command ends with why, and nothing is changed."""
        from tme.controller.services import audit

        actor = f"cli:{getpass.getuser()}"
        try:
            self.change.commit(action, actor=actor, target=target, client="cli", details=details)
        except audit.RowNotWritten as exc:
            fail(exc.message)


@contextmanager
def audited_change(url: str | None, settings: Settings) -> Iterator[CliChange]:
    """One transaction for a change and its audit row (audit.audited_change). A change
    left without `commit` is rolled back and raises: never committed without its row."""
    from tme.controller.services import audit

    key = audit.audit_key(settings)
    with (
        database(url, settings) as (_engine, session),
        audit.audited_change(session, key) as change,
    ):
        yield CliChange(change)


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator, engineer or admin.")],
    sites: SitesOption = "*",
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="TME_NEW_PASSWORD", help="Default: prompt."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a user (the first admin: `tme user create admin --role admin`)."""
    from tme.controller.services.users import check_new_user, create_user, new_password_hash

    with cli_errors():
        check_new_user(username, role, sites)  # before asking for a password
    settings = change_settings(db)  # so is the audit key
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with cli_errors():
        hashed = new_password_hash(password)  # before the change locks the audit chain
    with audited_change(db, settings) as change:
        user = create_user(change.session, username, hashed, role, sites)
        change.commit("user.create", f"user:{username}", {"role": role, "sites": user.sites})
    console.print(f"user {username} created ({role}, sites {', '.join(user.sites)})")


@user_app.command("list")
def user_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List users."""
    from tme.controller.services.users import list_users

    with database(db) as (_engine, session):
        users = list_users(session)
    rows = [
        {
            "username": u.username,
            "role": u.role,
            "sites": u.sites,
            "disabled": u.disabled,
            "last_login_at": u.last_login_at,
        }
        for u in users
    ]
    if as_json:
        print_json(rows)
        return
    print_table(
        "users",
        ["username", "role", "sites", "disabled", "last login"],
        [_cells(r) for r in rows],
    )


@user_app.command("disable")
def user_disable(username: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Disable a user and revoke their tokens and sessions."""
    from tme.controller.services.users import disable_user

    with audited_change(db, change_settings(db)) as change:
        disable_user(change.session, username)
        change.commit("user.disable", f"user:{username}", {})
    console.print(f"user {username} disabled; their tokens are revoked")


@token_app.command("create")
def token_create(
    username: Annotated[str, typer.Argument(help="The user the token acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    role: Annotated[str | None, typer.Option("--role", help="Default: the user's.")] = None,
    sites: Annotated[str | None, typer.Option("--sites", help="Default: the user's.")] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="Default: auth.token_ttl_days.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Make an API token; it is printed once and cannot be shown again."""
    from tme.controller.services.tokens import create_token

    settings = change_settings(db)
    ttl = days or settings.auth.token_ttl_days
    with audited_change(db, settings) as change:
        issued = create_token(change.session, username, name, days=ttl, role=role, sites=sites)
        row = issued.row
        change.commit(
            "token.create",
            f"token:{row.id}",
            {"user": username, "name": name, "role": row.role, "sites": row.sites},
        )
    console.print(
        f"token {row.id} for {username} ({row.role}, sites {', '.join(row.sites)}), "
        f"expires {row.expires_at:%Y-%m-%d}:",
        highlight=False,
    )
    typer.echo(issued.value)


@token_app.command("list")
def token_list(
    username: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API tokens (never their values)."""
    from tme.controller.services.tokens import list_tokens

    with database(db) as (_engine, session):
        pairs = list_tokens(session, username)
    rows = [
        {
            "id": t.id,
            "user": u.username,
            "name": t.name,
            "role": t.role,
            "sites": t.sites,
            "expires_at": t.expires_at,
            "last_used_at": t.last_used_at,
            "revoked_at": t.revoked_at,
        }
        for t, u in pairs
    ]
    if as_json:
        print_json(rows)
        return
    print_table(
        "API tokens",
        ["id", "user", "name", "role", "sites", "expires", "last used", "revoked"],
        [_cells(r) for r in rows],
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="Token id (tme token list).")], db: DbOption = None
) -> None:
    """Revoke a token at once."""
    from tme.controller.services.tokens import revoke_token

    with audited_change(db, change_settings(db)) as change:
        revoke_token(change.session, token_id)
        change.commit("token.revoke", f"token:{token_id}", {})
    console.print(f"token {token_id} revoked")


def _cells(row: dict[str, Any]) -> list[Any]:
    """A JSON row's values as table cells, in its order; a list of sites as one cell."""
    return [",".join(value) if isinstance(value, list) else value for value in row.values()]
