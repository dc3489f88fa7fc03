"""mchat.db: rows handed to one statement keep their values, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from bridge.models import ProcessedRequest
from mchat.db import model_columns, model_from_row, planned_rows, rows_insert, rows_source, value_in
from org.models import Employee
from tests.factories import EmployeeFactory


@pytest.mark.django_db
def test_rows_insert_stores_what_save_would_and_gives_each_object_its_key():
    when = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=UTC)
    records = [
        ProcessedRequest(
            client_id="emp_a_001_d1", seq_id="s1", action="x", response={"code": 0, "t": "中文"}
        ),
        ProcessedRequest(client_id="emp_a_001_d1", seq_id="s2", action="x", response=None),
        ProcessedRequest(
            client_id="emp_a_001_d1", seq_id="s3", action="x", response=["a", 1], created_at=when
        ),
    ]
    # seq_id is unique among these rows (one client), so it can match keys to objects.
    fields = ("client_id", "seq_id", "action", "response", "created_at")
    rows_insert(records, fields=fields, returning_pk_by="seq_id")
    stored = {r.seq_id: r for r in ProcessedRequest.objects.all()}
    assert [r.pk for r in records] == [stored[s].pk for s in ("s1", "s2", "s3")]
    assert stored["s1"].response == {"code": 0, "t": "中文"}
    # None is SQL NULL (a pending answer), not a JSON null.
    assert list(ProcessedRequest.objects.filter(response__isnull=True).values_list("seq_id", flat=True)) == [
        "s2"
    ]
    assert stored["s3"].response == ["a", 1]
    # auto_now_add filled in as save() would, over any value given.
    assert all(r.created_at is not None and r.created_at != when for r in stored.values())


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Employee, ProcessedRequest])
def test_model_from_row_builds_what_the_orm_builds(model):
    # Booleans, datetimes and JSON come back from SQLite as ints and text; converted as the
    # ORM converts them, every field has the ORM's value and type.
    EmployeeFactory(is_ai_agent=True, last_seen_at=datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    ProcessedRequest.objects.create(client_id="emp_a_001_d1", seq_id="s1", action="x", response={"中": [1]})
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {model_columns(model, 't')} FROM {table} AS t")
        (row,) = cursor.fetchall()
    built, loaded = model_from_row(model, row), model.objects.get()
    assert not built._state.adding and built._state.db == "default"
    for field in model._meta.concrete_fields:
        ours, orms = getattr(built, field.attname), getattr(loaded, field.attname)
        assert (ours, type(ours)) == (orms, type(orms)), field.attname


@pytest.mark.django_db
def test_rows_source_joins_like_a_table():
    ProcessedRequest.objects.create(client_id="emp_a_001_d1", seq_id="s1", action="x", response={})
    ProcessedRequest.objects.create(client_id="emp_b_002_d1", seq_id="s1", action="y", response={})
    source, params = rows_source(
        [("client_id", "text"), ("seq_id", "text"), ("n", "bigint")],
        [("emp_b_002_d1", "s1", 7), ("emp_c_003_d1", "s1", 8), ('it\'s "quoted"', "s1", 9)],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.action, v.n FROM bridge_processedrequest AS p JOIN {source} "
            f"ON p.client_id = v.client_id AND p.seq_id = v.seq_id",
            params,
        )
        assert cursor.fetchall() == [("y", 7)]
        cursor.execute(f"SELECT v.client_id FROM {source} ORDER BY v.n", params)
        assert [row[0] for row in cursor.fetchall()] == ["emp_b_002_d1", "emp_c_003_d1", 'it\'s "quoted"']


def test_statement_texts_depend_on_the_batch_size_in_powers_of_two_only():
    assert [planned_rows(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 64, 65)] == [1, 1, 2, 4, 4, 8, 8, 16, 64, 128]
    columns = [("n", "bigint")]
    texts = {rows_source(columns, [(i,) for i in range(n)])[0] for n in range(5, 9)}
    assert len(texts) == (1 if connection.vendor == "postgresql" else 4)  # SQLite: VALUES per row


@pytest.mark.django_db
def test_on_postgresql_statements_run_again_are_prepared():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    connection.ensure_connection()
    assert connection.connection.prepare_threshold == 5  # Django's default, None, never prepares
    with connection.cursor() as cursor:
        for _ in range(6):
            cursor.execute("SELECT %s::int + 1", [41])
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%$1::int + 1%"]
        )
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_value_in_selects_the_listed_values_and_probes_the_index():
    Employee.objects.bulk_create(
        [Employee(employee_id=f"emp_v{i:05d}", name=str(i), mqtt_password_hash="-") for i in range(3000)]
    )
    wanted = [f"emp_v{i:05d}" for i in range(0, 3000, 100)] + ["emp_nobody_000"]
    condition, params = value_in("e.employee_id", wanted, "text")
    sql = f"SELECT e.employee_id FROM {Employee._meta.db_table} AS e WHERE {condition}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert sorted(r[0] for r in cursor.fetchall()) == wanted[:-1]
        if connection.vendor == "postgresql":
            # 30 values among 3,000 rows: looked up in the index, not a scan of the table.
            cursor.execute("ANALYZE org_employee")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(r[0] for r in cursor.fetchall())
            assert "Index" in plan and "Seq Scan" not in plan, plan
