"""`tme user create|disable` and `tme token create|revoke` commit each change with its
audit row, in one transaction, or neither.

The row used to be appended in a transaction of its own once the change was committed:
when that append failed (a database error, the audit key's file unreadable, a crash in
between), the user or token was made, disabled or revoked with no row saying who did it.
Its key is checked before the command asks for a password or changes anything.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_refusing import AuditLogRefusing
from cli_lines import one_line_error
from dialects import DIALECTS, postgres_emptying, upgraded_engine
from typer.testing import CliRunner

from tme.cli.main import app
from tme.controller.services import audit

PASSWORD = ["--password", "long enough"]
KEY = "the-controllers-audit-key-0123456789"
ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an upgraded database of each dialect with no users, tokens or audit
    rows, and no key in the environment (the local mode's public key)."""
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.delenv("TME_AUTH__AUDIT_KEY", raising=False)
    monkeypatch.delenv("TME_AUTH__AUDIT_KEY_FILE", raising=False)
    engine = upgraded_engine(request, tmp_path, "access")
    if request.param == "postgresql":
        emptying = postgres_emptying(engine, ("users", "api_tokens", "audit_log", "audit_head"))
        with engine.begin() as connection:
            for statement in emptying:
                connection.exec_driver_sql(statement)
    yield engine.url.render_as_string(hide_password=False)
    engine.dispose()


def _tme(*args: str, db: str, given: str | None = None) -> Any:
    return CliRunner().invoke(app, [*args, "--db", db], input=given)


def _state(db: str) -> list[Any]:
    """The users, the tokens and the audit log, as the CLI lists them."""
    lists = (["user", "list", "--json"], ["token", "list", "--json"], ["audit", "tail", "--json"])
    return [json.loads(_tme(*args, db=db).stdout) for args in lists]


def _audit_rows(db: str) -> list[dict[str, Any]]:
    return list(json.loads(_tme("audit", "tail", "--json", "--limit", "1000", db=db).stdout))


def _admin_with_token(db: str) -> int:
    """User ann (admin) and a token of hers; the token's id."""
    assert _tme("user", "create", "ann", "--role", "admin", *PASSWORD, db=db).exit_code == 0
    made = _tme("token", "create", "ann", "--name", "ci", db=db)
    assert made.exit_code == 0, made.output
    return int(made.stdout.split()[1])  # "token 1 for ann ..."


CHANGES = {
    "user create": (["user", "create", "bob", "--role", "viewer", *PASSWORD], "user.create"),
    "user disable": (["user", "disable", "ann"], "user.disable"),
    "token create": (["token", "create", "ann", "--name", "deploy"], "token.create"),
    "token revoke": (["token", "revoke", "{token}"], "token.revoke"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_whose_audit_row_cannot_be_written_is_not_made(db_url: str, change: str) -> None:
    token_id = _admin_with_token(db_url)
    before = _state(db_url)
    args, action = CHANGES[change]
    with AuditLogRefusing(db_url):
        refused = _tme(*[a.format(token=token_id) for a in args], db=db_url)
    line = one_line_error(refused)
    assert _state(db_url) == before  # no user, token, disabling or revoking, no row
    assert line.startswith(f"error: nothing changed: the audit row of {action} "), line
    assert line.endswith("cannot be written (audit log refuses rows)"), line


def test_each_change_is_committed_with_one_row_that_verifies(db_url: str) -> None:
    appends = audit._APPENDER.submitted
    token_id = _admin_with_token(db_url)
    revoked = _tme("token", "revoke", str(token_id), db=db_url)
    assert revoked.stdout == f"token {token_id} revoked\n", revoked.output
    disabled = _tme("user", "disable", "ann", db=db_url)
    assert disabled.stdout == "user ann disabled; their tokens are revoked\n", disabled.output
    fields = ("action", "target", "details", "actor", "outcome", "client")
    rows = [tuple(row[name] for name in fields) for row in _audit_rows(db_url)]
    token = {"user": "ann", "name": "ci", "role": "admin", "sites": ["*"]}
    assert rows == [
        ("user.create", "user:ann", {"role": "admin", "sites": ["*"]}, ACTOR, "ok", "cli"),
        ("token.create", f"token:{token_id}", token, ACTOR, "ok", "cli"),
        ("token.revoke", f"token:{token_id}", {}, ACTOR, "ok", "cli"),
        ("user.disable", "user:ann", {}, ACTOR, "ok", "cli"),
    ]
    assert audit._APPENDER.submitted == appends  # no audit transaction of their own
    verified = _tme("audit", "verify", db=db_url)
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == "audit log intact: 4 rows, chain verified to row 4\n"


def test_a_key_the_log_is_not_chained_under_is_refused_before_the_password_is_asked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operator's shell without the controller's key (here the local mode's public
    # one) appended rows that broke the chain, once the password was typed twice.
    monkeypatch.setenv("TME_AUTH__AUDIT_KEY", KEY)
    token_id = _admin_with_token(db_url)
    before = _state(db_url)
    monkeypatch.delenv("TME_AUTH__AUDIT_KEY")
    asked = _tme("user", "create", "bob", "--role", "viewer", db=db_url, given="")
    line = one_line_error(asked)
    assert line.startswith("error: the audit log does not verify under this auth.audit_key")
    assert "password" not in asked.stdout.lower()
    assert one_line_error(_tme("token", "revoke", str(token_id), db=db_url)) == line
    monkeypatch.setenv("TME_AUTH__AUDIT_KEY", KEY)
    assert _state(db_url) == before
    assert _tme("audit", "verify", db=db_url).exit_code == 0


def test_an_unreadable_audit_key_file_is_an_error_before_the_password_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TME_AUTH__AUDIT_KEY_FILE", str(tmp_path / "no-such-key"))
    asked = _tme("user", "create", "bob", "--role", "viewer", db=f"sqlite:///{tmp_path}/t.db")
    line = one_line_error(asked)
    assert line.startswith('error: auth.audit_key_file: cannot read secret file "'), line
    assert "password" not in asked.stdout.lower()
    assert list(tmp_path.iterdir()) == []  # no database opened either


def test_a_new_users_password_is_hashed_before_the_audit_chain_is_locked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing takes about 0.15 s: done while the chain is locked, every other change
    (the API's, the dashboard's, the event consumer's rows) waited for it."""
    from tme.controller.services import users

    order: list[str] = []
    hash_password, lock_chain = users.hash_password, audit.lock_chain

    def hashing(password: str) -> str:
        order.append("hash")
        return hash_password(password)

    def locking(connection: Any) -> None:
        order.append("lock")
        lock_chain(connection)

    monkeypatch.setattr(users, "hash_password", hashing)
    monkeypatch.setattr(audit, "lock_chain", locking)
    made = _tme("user", "create", "ann", "--role", "viewer", *PASSWORD, db=db_url)
    assert made.exit_code == 0, made.output
    assert order[0] == "hash" and "lock" in order and "hash" not in order[1:], order
    before = list(order)
    short = _tme("user", "create", "bob", "--role", "viewer", "--password", "short", db=db_url)
    assert short.exit_code == 2 and "at least 8 characters" in short.stderr, short.output
    assert order == before  # a password refused locks nothing
