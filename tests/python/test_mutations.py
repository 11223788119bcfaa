"""Row-level changes through ADBC (DELETE, UPDATE, TRUNCATE), checked row by row against DuckDB
running the same statements on the same starting rows; and the fsync order of a commit on local
storage, traced with strace on the real server."""

import os
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import LakehouseServer, add_user

SETUP = [
    "CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR, city VARCHAR, age BIGINT, "
    "PRIMARY KEY (id))",
    "CREATE TABLE moves (person BIGINT, city VARCHAR)",
    "INSERT INTO people VALUES (1, 'Ada', 'London', 36), (2, 'Bob', NULL, 41), "
    "(3, 'Cy', 'Paris', NULL), (4, 'Di', 'Rome', 29), (5, 'Ed', NULL, NULL), "
    "(6, 'Flo', 'Oslo', 52), (7, 'Gus', 'Lima', 18)",
    "INSERT INTO moves VALUES (2, 'Berlin'), (4, 'Madrid'), (9, 'Nowhere')",
]

# Each statement runs on both engines; affected counts and the whole table must agree after each.
STATEMENTS = [
    "UPDATE people SET city = 'Paris' WHERE id = 1",
    "UPDATE people SET age = age + 1, name = upper(name) WHERE age IS NOT NULL",
    "UPDATE people SET city = moves.city FROM moves WHERE people.id = moves.person",
    "UPDATE people SET city = coalesce(city, 'unknown'), age = coalesce(age, 0) * 2",
    "DELETE FROM people WHERE id IN (SELECT person FROM moves WHERE city <> 'Nowhere')",
    "UPDATE people SET name = (SELECT max(city) FROM moves) WHERE id = 3",
    "INSERT INTO people VALUES (8, 'Hal', NULL, 60)",
    "DELETE FROM people WHERE age > 100 OR city IS NULL",
    "DELETE FROM people WHERE name LIKE 'X%'",
    "UPDATE people SET age = NULL WHERE city = 'unknown'",
    "DELETE FROM people WHERE EXISTS (SELECT 1 FROM moves m WHERE m.city = people.city)",
    "DELETE FROM people WHERE age < 40",
]


def rows(cur, sql):
    cur.execute(sql)
    return [tuple(r.values()) for r in cur.fetch_arrow_table().to_pylist()]


def same_as_duckdb(cur, duck, sql, select, ours=None):
    """Runs `sql` here (as `ours` when given) and in DuckDB; the affected counts and then the
    rows of `select` must be equal. Returns the count."""
    cur.execute(ours or sql)
    count = cur.fetch_arrow_table().column("count").to_pylist()[0]
    theirs = duck.execute(sql).fetchall()[0][0]
    assert count == theirs, f"{sql}: {count} rows here, {theirs} in DuckDB"
    assert rows(cur, select) == duck.execute(select).fetchall(), sql
    return count


def manual_server(tmp_path):
    """A server without automatic compaction, for tests that count versions."""
    return LakehouseServer(tmp_path / "data", "--auto-compact", "false",
                           log_path=tmp_path / "server.log")


def test_statements_match_duckdb_row_by_row(tmp_path):
    server = manual_server(tmp_path)
    duck = duckdb.connect()
    expected = ["create", "append"]
    with server.connect() as conn, conn.cursor() as cur:
        for sql in SETUP:
            cur.execute(sql)
            duck.execute(sql)
        for sql in STATEMENTS:
            if same_as_duckdb(cur, duck, sql, "SELECT id, name, city, age FROM people ORDER BY id"):
                expected.append({"INSERT": "append"}.get(sql.split()[0], sql.split()[0].lower()))
        cur.execute("TRUNCATE people")
        truncated = cur.fetch_arrow_table().column("count").to_pylist()[0]
        assert truncated == duck.execute("SELECT count(*) FROM people").fetchall()[0][0]
        assert rows(cur, "SELECT count(*) FROM people") == [(0,)]
    server.stop()
    manifests = sorted((Path(server.storage) / "tables/public/people/_manifests").iterdir())
    operations = [re.search(r'"operation": "(\w+)"', m.read_text()).group(1) for m in manifests]
    # One version per statement that changed rows (the LIKE delete changes none).
    assert "delete" in expected and "update" in expected
    assert operations == expected + ["truncate"], operations


def test_lance_table_statements_match_duckdb_row_by_row(server):
    """The same statements (UPDATE ... FROM and subqueries in SET included) on a Lance copy of
    `people`, checked against DuckDB the same way."""
    duck = duckdb.connect()
    with server.connect() as conn, conn.cursor() as cur:
        for sql in SETUP:
            ours = sql.replace("PRIMARY KEY (id))",
                               "v FLOAT[2]) STORED AS LANCE WITH (metric = 'l2')") \
                if sql.startswith("CREATE TABLE people") else sql
            if sql.startswith("INSERT INTO people"):
                cur.execute("CREATE TABLE src (id BIGINT, name VARCHAR, city VARCHAR, "
                            "age BIGINT)")
                cur.execute(sql.replace("INSERT INTO people", "INSERT INTO src"))
                ours = ("INSERT INTO people SELECT id, name, city, age, "
                        "[CAST(id AS FLOAT), 0.0] FROM src")
            cur.execute(ours)
            duck.execute(sql)
        for sql in STATEMENTS:
            ours = sql.replace("VALUES (8, 'Hal', NULL, 60)",
                               "VALUES (8, 'Hal', NULL, 60, [8.0, 0.0])")
            same_as_duckdb(cur, duck, sql, "SELECT id, name, city, age FROM people ORDER BY id",
                           ours)
        cur.execute("SELECT id FROM vector_search('people', [1.0, 0.0], 1)")
        assert cur.fetchall()[0][0] == rows(cur, "SELECT min(id) FROM people")[0][0]
        # MERGE with every clause kind (one Lance commit); inserted rows get a NULL vector.
        for sql in ["INSERT INTO moves VALUES (8, 'Berlin'), (6, 'Oslo'), (11, 'Lima')",
                    "MERGE INTO people p USING moves m ON p.id = m.person "
                    "WHEN MATCHED AND m.city = 'Berlin' THEN DELETE "
                    "WHEN MATCHED THEN UPDATE SET city = upper(m.city), age = p.age + 1 "
                    "WHEN NOT MATCHED AND m.person > 10 THEN INSERT (id, name, city, age) "
                    "VALUES (m.person, 'new', m.city, 0)"]:
            changed = same_as_duckdb(cur, duck, sql,
                                     "SELECT id, name, city, age FROM people ORDER BY id")
            assert changed > 0, sql


MERGE_SETUP = [
    "CREATE TABLE stock (sku BIGINT NOT NULL, qty BIGINT, note VARCHAR, PRIMARY KEY (sku))",
    "INSERT INTO stock VALUES (1, 10, 'a'), (2, 0, NULL), (3, 5, 'c'), (4, NULL, 'd'), "
    "(7, 1, 'eu')",
    "CREATE TABLE delivery (sku BIGINT, qty BIGINT, region VARCHAR)",
    "INSERT INTO delivery VALUES (1, 5, 'eu'), (2, 0, 'us'), (5, 7, 'eu'), (6, NULL, 'us'), "
    "(4, 3, NULL)",
]

MERGES = [
    # Every clause kind, with conditions, applied in order; NULLs on both sides.
    "MERGE INTO stock s USING delivery d ON s.sku = d.sku "
    "WHEN MATCHED AND d.qty = 0 THEN DELETE "
    "WHEN MATCHED THEN UPDATE SET qty = coalesce(s.qty, 0) + d.qty, note = d.region "
    "WHEN NOT MATCHED AND d.qty IS NOT NULL THEN INSERT (sku, qty, note) "
    "VALUES (d.sku, d.qty * 2, 'new')",
    # A non-key ON condition over a keyed table, a derived source.
    "MERGE INTO stock USING (SELECT 'eu' AS region, 100 AS bonus) AS b ON stock.note = b.region "
    "WHEN MATCHED THEN UPDATE SET qty = qty + b.bonus",
    # Upserts by primary key.
    "INSERT INTO stock VALUES (1, 1, 'x'), (9, 9, 'y') ON CONFLICT (sku) "
    "DO UPDATE SET qty = excluded.qty + qty, note = excluded.note",
    "INSERT INTO stock VALUES (1, 50, 'z'), (10, 10, 'w') ON CONFLICT DO NOTHING",
    "INSERT INTO stock (sku, qty) SELECT sku + 100, qty FROM delivery WHERE sku < 3 "
    "ON CONFLICT (sku) DO UPDATE SET qty = 0",
    "INSERT INTO stock VALUES (3, 30, 'q') ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty "
    "WHERE stock.qty > 100",
]


def test_merge_and_upserts_match_duckdb_row_by_row(server):
    duck = duckdb.connect()
    with server.connect() as conn, conn.cursor() as cur:
        for sql in MERGE_SETUP:
            cur.execute(sql)
            duck.execute(sql)
        for sql in MERGES:
            same_as_duckdb(cur, duck, sql, "SELECT sku, qty, note FROM stock ORDER BY sku")


def test_compact_and_vacuum_commands(server):
    """`lakehouse compact` and `lakehouse vacuum` through the server, for one table and for
    every table."""
    import subprocess
    from conftest import BIN
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA s")
        for table in ["a", "s.b"]:
            cur.execute(f"CREATE TABLE {table} (id BIGINT)")
            for i in range(3):
                cur.execute(f"INSERT INTO {table} VALUES ({i})")

    def run(*args):
        result = subprocess.run([BIN, *args, "--server", server.url], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert run("compact", "--table", "a") == ["a: rewrote 3 file(s)"]
    assert run("compact") == ["public.a: rewrote 0 file(s)", "s.b: rewrote 3 file(s)"]
    assert run("vacuum", "--retain-hours", "0", "--dry-run") == [
        "public.a: would remove 3 file(s)", "s.b: would remove 3 file(s)"]
    assert run("vacuum", "--table", "s.b", "--retain-hours", "0") == ["s.b: removed 3 file(s)"]
    with server.connect() as conn, conn.cursor() as cur:
        assert rows(cur, "SELECT count(*) FROM s.b") == [(3,)]
        assert rows(cur, "SELECT count(*) FROM a") == [(3,)]
    result = subprocess.run([BIN, "vacuum", "--table", "nope", "--server", server.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "nope" in result.stderr, result.stderr


def test_cli_ingest_upserts_a_csv_by_primary_key(server, tmp_path):
    """`lakehouse ingest --mode upsert`: a CRM export upserted by its key, one commit; the same
    file again is a no-op; a file holding one key twice is refused and writes nothing."""
    import subprocess
    from conftest import BIN
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE crm (id BIGINT NOT NULL, name VARCHAR, city VARCHAR, "
                    "PRIMARY KEY (id))")
        cur.execute("INSERT INTO crm VALUES (1, 'Ada', 'London'), (2, 'Bob', 'Oslo')")
    export = tmp_path / "export.csv"
    export.write_text("id,name,city\n2,Bob,Paris\n3,Cy,Rome\n")

    def ingest(path):
        return subprocess.run([BIN, "ingest", "--server", server.url, "--table", "crm",
                               "--mode", "upsert", str(path)],
                              capture_output=True, text=True, timeout=120)

    out = ingest(export)
    assert out.returncode == 0, out.stderr
    with server.connect() as conn, conn.cursor() as cur:
        assert rows(cur, "SELECT id, name, city FROM crm ORDER BY id") == [
            (1, "Ada", "London"), (2, "Bob", "Paris"), (3, "Cy", "Rome")]
    out = ingest(export)
    assert out.returncode == 0 and "unchanged" in out.stdout + out.stderr, out.stdout
    twice = tmp_path / "twice.csv"
    twice.write_text("id,name,city\n4,Di,Lima\n4,Di,Quito\n")
    out = ingest(twice)
    assert out.returncode != 0 and "duplicate primary key" in out.stderr, out.stderr
    with server.connect() as conn, conn.cursor() as cur:
        assert rows(cur, "SELECT count(*) FROM crm") == [(3,)]


def test_adbc_upsert_route_is_a_staged_table_and_on_conflict(server):
    """ADBC's Flight SQL driver (1.13) forwards no custom ingest options, so the ADBC route to
    an upsert is adbc_ingest into a staging table, then INSERT ... ON CONFLICT from it. A plain
    append of a stored key is refused."""
    import adbc_driver_manager
    import pyarrow as pa
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE crm (id BIGINT NOT NULL, name VARCHAR, PRIMARY KEY (id))")
        cur.execute("INSERT INTO crm VALUES (1, 'a'), (2, 'b')")
        data = pa.table({"id": pa.array([2, 3], pa.int64()), "name": ["B", "C"]})
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest("crm", data, mode="append")
        assert "duplicate primary key (id)=(2)" in str(e.value)
        cur.adbc_ingest("crm_staged", data, mode="create")
        cur.execute("INSERT INTO crm SELECT * FROM crm_staged "
                    "ON CONFLICT (id) DO UPDATE SET name = excluded.name")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [2]
        cur.execute("DROP TABLE crm_staged")
        assert rows(cur, "SELECT id, name FROM crm ORDER BY id") == [
            (1, "a"), (2, "B"), (3, "C")]


def test_read_user_cannot_change_rows(tmp_path):
    config = tmp_path / "lakehouse.toml"
    add_user(config, "writer", "wpass", "write")
    add_user(config, "reader", "rpass", "read")
    server = LakehouseServer(tmp_path / "data", "--auth", "basic", "--config", str(config),
                             log_path=tmp_path / "server.log", login=("writer", "wpass"))
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id BIGINT)")
            cur.execute("INSERT INTO t VALUES (1), (2)")
        import adbc_driver_manager
        with server.connect(login=("reader", "rpass")) as conn, conn.cursor() as cur:
            for sql in ["DELETE FROM t", "UPDATE t SET id = 3", "TRUNCATE t",
                        "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED THEN DELETE"]:
                with pytest.raises(adbc_driver_manager.Error) as e:
                    cur.execute(sql)
                assert "permission" in str(e.value).lower(), str(e.value)
            assert rows(cur, "SELECT count(*) FROM t") == [(2,)]
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_commit_fsyncs_files_before_the_manifest_and_the_manifest_before_the_answer(tmp_path):
    """`strace -f -y` records fsync and link/rename calls with the paths of their descriptors:
    every data and deletion file of a commit is fsynced before its manifest is linked into
    place, and the manifest and its directory are fsynced before the client has its answer."""
    storage = tmp_path / "data"
    trace = tmp_path / "trace.txt"
    server = LakehouseServer(storage, log_path=tmp_path / "server.log",
                             prefix=["strace", "-f", "-y", "-qq", "-o", str(trace),
                                     "-e", "trace=fsync,fdatasync,link,linkat,rename,renameat,"
                                           "renameat2"])
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id BIGINT NOT NULL, s VARCHAR)")
            cur.execute("INSERT INTO t SELECT value, 'row' FROM generate_series(1, 1000)")
            cur.execute("UPDATE t SET s = 'changed' WHERE id = 5")
            assert cur.fetch_arrow_table().column("count").to_pylist() == [1]
            # The answer is in: the manifest of version 3 must already be durable.
            lines = trace.read_text().splitlines()
    finally:
        server.stop()
    table = storage.resolve() / "tables/public/t"
    manifest = str(table / "_manifests" / f"{3:020}.json")
    data_files = [str(p) for p in (table / "data").iterdir()]
    deletes = [str(p) for p in (table / "deletes").iterdir()]
    assert len(data_files) == 2 and len(deletes) == 1

    def first(predicate, what, after=-1):
        for i, line in enumerate(lines):
            if i > after and predicate(line):
                return i
        raise AssertionError(f"no {what} in the trace:\n" + "\n".join(lines[-40:]))

    published = first(lambda l: re.search(r"link(at)?\(.*" + re.escape(manifest), l),
                      "link of the manifest")
    newest = max(data_files, key=os.path.getmtime)
    for path in [newest, *deletes]:
        synced = first(lambda l, p=path: "fsync(" in l and f"<{p}>" in l, f"fsync of {path}")
        assert synced < published, f"{path} was fsynced after the manifest was published"
    # After the link: the manifest, then its directory (the new name), are fsynced.
    synced = first(lambda l: "fsync(" in l and f"<{manifest}>" in l, "fsync of the manifest")
    assert synced > published
    first(lambda l: "fsync(" in l and f"<{table / '_manifests'}>" in l,
          "fsync of the manifest directory after the link", after=published)
