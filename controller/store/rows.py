"""A new row's INSERT parameters from its model's defaults, without building the model.

Building a SQLModel table object costs 60-80 us (instrumented attributes, one
`__setattr__` per field); a create that writes its rows with Core statements
(services/task_start.py) needs only their values. `new_row(Model, **values)` holds
what `Model(**values)` would hold in its columns.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from pydantic_core import PydanticUndefined
from sqlalchemy import Table
from sqlmodel import SQLModel


def table_of(model: type[SQLModel] | SQLModel) -> Table:
    """The Core table of a table model (or of a row's model): SQLModel sets `__table__`
    on each table class but does not declare it to type checkers."""
    return cast(Table, model.__table__)  # type: ignore[union-attr]


@cache
def _defaults(
    model: type[SQLModel],
) -> tuple[dict[str, Any], dict[str, Callable[[], Any]], frozenset[str], frozenset[str]]:
    """(plain defaults, default factories, primary key columns, columns) of a table model."""
    table = table_of(model)
    plain: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    for column in table.columns:
        field = model.model_fields.get(column.key)
        if field is None:
            continue
        if field.default_factory is not None:
            factories[column.key] = field.default_factory  # type: ignore[assignment]
        elif field.default is not PydanticUndefined:
            plain[column.key] = field.default
    keys = frozenset(c.key for c in table.columns if c.primary_key)
    return plain, factories, keys, frozenset(c.key for c in table.columns)


def new_row(model: type[SQLModel], **values: Any) -> dict[str, Any]:
    """`values` over the model's defaults, as one INSERT's parameters; a primary key left
    unset (None) is left out, for the database to assign. Raises TypeError for a name
    that is not a column and for a column with no value and no default."""
    plain, factories, keys, columns = _defaults(model)
    unknown = values.keys() - columns
    if unknown:
        raise TypeError(f"{model.__name__} has no column {sorted(unknown)}")
    row = {k: copy.copy(v) if isinstance(v, list | dict | set) else v for k, v in plain.items()}
    for key, factory in factories.items():
        if key not in values:
            row[key] = factory()
    row.update(values)
    missing = columns - row.keys() - keys
    if missing:
        raise TypeError(f"{model.__name__} needs {sorted(missing)}")
    return {k: v for k, v in row.items() if v is not None or k not in keys}
