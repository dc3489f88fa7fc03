"""Set-based SQL for the request path, where the ORM's per-row work costs more than the rows.

`rows_source` turns a list of rows into something a statement can select from or join, named
`v` with named columns. On PostgreSQL that is `jsonb_to_recordset` over ONE parameter: the
statement text depends only on the number of rows (psycopg parses and caches it, instead of
splitting a query of hundreds of placeholders on every call) and the rows travel as one JSON
document encoded in C. On SQLite it is a VALUES list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import JSONField, Model

M = TypeVar("M", bound=Model)


def rows_source(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
    """(SQL, params) of a row source aliased `v` with (name, PostgreSQL type) columns.

    Values: None, bool, int, str, aware datetimes, or JSON-able values for jsonb columns.
    """
    names = [name for name, _type in columns]
    if connection.vendor == "postgresql":
        document = [
            {n: (x.isoformat() if isinstance(x, datetime) else x) for n, x in zip(names, row, strict=True)}
            for row in rows
        ]
        typed = ", ".join(f"{name} {type_}" for name, type_ in columns)
        # The LIMIT tells the planner how many rows come (it guesses 100 for a set-returning
        # function, and would then scan a whole table rather than probe its index).
        return (
            f"(SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x({typed}) LIMIT {planned_rows(len(rows))}) AS v",
            [json.dumps(document)],
        )
    placeholders = "(" + ", ".join(["%s"] * len(names)) + ")"
    renamed = ", ".join(f"column{i} AS {name}" for i, name in enumerate(names, 1))
    params = [
        json.dumps(x) if type_ == "jsonb" and x is not None else _sqlite_value(x)
        for row in rows
        for x, (_name, type_) in zip(row, columns, strict=True)
    ]
    return f"(SELECT {renamed} FROM (VALUES {', '.join([placeholders] * len(rows))})) AS v", params


def value_in(column: str, values: Sequence[Any], type_: str) -> tuple[str, list]:
    """(SQL, params) of "`column` is one of `values`", for a column with an index.

    On PostgreSQL `= ANY(array)`, which the planner answers with index lookups (a join with
    a row source of a hundred-odd rows, rows_source, made it scan a 10,000-row table instead:
    six times slower); one parameter, so the text does not depend on the number of values.
    On SQLite, `IN` over json_each of one parameter.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::{type_}[])", [list(values)]
    return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(list(values))]


def planned_rows(n: int) -> int:
    """`n` rounded up to a power of two: the row count a statement tells the planner. Close
    enough for its plan, and it keeps the statement texts few, so each is prepared once per
    connection (psycopg keeps 100) rather than one per batch size, evicting each other."""
    return 1 << max(0, n - 1).bit_length()


def rows_insert(
    objs: Sequence[Model], *, fields: Sequence[str], returning_pk_by: str | None = None, where: str = ""
) -> None:
    """INSERT `objs` (one model) in one statement, values as `save()` would store them.

    `fields` are model field names (foreign keys by name). With `returning_pk_by`, the name
    of a unique field among them, each object gets its new primary key (matched by that
    field: neither backend promises RETURNING rows in VALUES order). `where`: a condition on
    the row source `v` (columns by column name); a row that fails it is not inserted, and its
    object keeps no primary key.
    """
    if not objs:
        return
    meta = type(objs[0])._meta
    model_fields = [meta.get_field(name) for name in fields]
    columns = [
        (field.column, "jsonb" if isinstance(field, JSONField) else field.db_type(connection))
        for field in model_fields
    ]
    rows = [[_stored(field, field.pre_save(obj, True)) for field in model_fields] for obj in objs]
    source, params = rows_source(columns, rows)
    quote = connection.ops.quote_name
    column_list = ", ".join(quote(column) for column, _type in columns)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({column_list}) "
        f"SELECT {', '.join(f'v.{column}' for column, _type in columns)} FROM {source}"
        f"{f' WHERE {where}' if where else ''}"
    )
    with connection.cursor() as cursor:
        if returning_pk_by is None:
            cursor.execute(sql, params)
            return
        key = meta.get_field(returning_pk_by)
        cursor.execute(f"{sql} RETURNING {quote(key.column)}, {quote(meta.pk.column)}", params)
        pks = dict(cursor.fetchall())
    for obj in objs:
        pk = pks.get(getattr(obj, key.attname))
        if pk is not None:
            obj.pk = pk
            obj._state.adding = False


def _stored(field, value):
    if isinstance(field, JSONField) or value is None or isinstance(value, datetime):
        return value
    return field.get_prep_value(value)


def _sqlite_value(value):
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def model_columns(model: type[Model], table_alias: str) -> str:
    """`alias.column, ...` for the model's concrete fields in their order: the columns a
    select must give, in that order, for model_from_row."""
    quote = connection.ops.quote_name
    return ", ".join(f"{table_alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def model_from_row(model: type[M], row: Sequence[Any]) -> M:
    """The instance the ORM would build from a row of model_columns: the database's values
    converted as a queryset converts them (SQLite's booleans, datetimes, JSON), then
    Model.from_db. For hot paths: a raw queryset sets this up again for every query."""
    names, converters = _row_plan(model, connection.vendor)
    if converters:
        values = list(row)
        for index, field_converters, expression in converters:
            value = values[index]
            for converter in field_converters:
                value = converter(value, expression, connection)
            values[index] = value
        row = values
    return model.from_db(connection.alias, names, row)


@cache
def _row_plan(model: type[Model], vendor: str) -> tuple[list[str], list[tuple[int, list[Callable], Any]]]:
    # The converters Django's SQL compiler applies to these columns (compiler.get_converters).
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
        if found:
            converters.append((index, found, expression))
    return [f.attname for f in fields], converters


def instance_adopt(instance, saved) -> None:
    """Make `instance` (built by a form or an import row) show what a service saved: the
    admin and the import preview keep using their own object."""
    for field in saved._meta.concrete_fields:
        setattr(instance, field.attname, getattr(saved, field.attname))
    instance._state.adding = False
    instance._state.db = saved._state.db
    instance._state.fields_cache = {}
