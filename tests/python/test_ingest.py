"""ADBC bulk ingest (`adbc_ingest` -> CommandStatementIngest) against a fresh server."""

import adbc_driver_manager
import pyarrow as pa
import pytest


def people(start, stop):
    ids = list(range(start, stop))
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids]})


def count(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {table}")
        return cur.fetch_arrow_table().column("n")[0].as_py()


def test_ingest_create_append_replace_create_append(server):
    with server.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("people", people(0, 100), mode="create") == 100
        assert count(conn, "people") == 100
        assert cur.adbc_ingest("people", people(100, 150), mode="append") == 50
        assert count(conn, "people") == 150
        assert cur.adbc_ingest("people", people(0, 7), mode="replace") == 7
        assert count(conn, "people") == 7
        assert cur.adbc_ingest("other", people(0, 3), mode="create_append") == 3
        assert cur.adbc_ingest("other", people(3, 5), mode="create_append") == 2
        assert count(conn, "other") == 5
        cur.execute("SELECT id, name FROM people ORDER BY id")
        assert cur.fetch_arrow_table().to_pydict() == people(0, 7).to_pydict()
        # The new tables are visible to metadata calls at once.
        assert conn.adbc_get_table_schema("other").names == ["id", "name"]


def test_ingest_refusals_name_the_problem_and_keep_the_data(server):
    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("people", people(0, 10), mode="create")
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("people", people(0, 1), mode="create")
        assert "already exists" in str(e.value)
        wrong = pa.table({"id": pa.array(["x"]), "age": pa.array([3])})
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("people", wrong, mode="append")
        message = str(e.value)
        assert "column `id`: table has Int64, data has Utf8" in message
        assert "column `age` (Int64) is not in the table" in message
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("nobody", people(0, 1), mode="append")
        assert "not found" in str(e.value)
        assert count(conn, "people") == 10


def test_view_types_never_reach_the_wire(server):
    data = pa.table({
        "s": pa.array(["a", "b", None], pa.string_view()),
        "b": pa.array([b"x", None, b"z"], pa.binary_view()),
    })
    with server.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("views", data, mode="create") == 3
        cur.execute("SELECT s, b FROM views")
        t = cur.fetch_arrow_table()
        assert t.schema.field("s").type == pa.string()
        assert t.schema.field("b").type == pa.binary()
        rows = sorted(zip(t.column("s").to_pylist(), t.column("b").to_pylist()), key=str)
        assert rows == sorted([("a", b"x"), ("b", None), (None, b"z")], key=str)
        assert conn.adbc_get_table_schema("views").field("s").type == pa.string()


def test_large_ingest_in_many_batches(server):
    batches = [people(i * 50_000, (i + 1) * 50_000).to_batches()[0] for i in range(10)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    with server.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("big", reader, mode="create") == 500_000
        cur.execute("SELECT sum(id) AS s, count(DISTINCT name) AS d FROM big")
        row = cur.fetch_arrow_table().to_pylist()[0]
        assert row == {"s": sum(range(500_000)), "d": 500_000}
