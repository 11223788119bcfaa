"""The 22 TPC-H queries at scale 0.1 through Flight SQL (ADBC) over data ingested with
`lakehouse ingest`, each result equal to DuckDB's over the same Parquet files (written by
tpchgen-cli, with view types in their Arrow schema).

Equality: the same number of columns and rows; rows equal as multisets, floats within a
relative tolerance of 1e-6, decimals within one unit of their last digit (DataFusion returns
AVG of DECIMAL(15,2) as DECIMAL(19,6), DuckDB as DOUBLE); and, where the query orders, the
ORDER BY key columns (listed in each query file's `-- order keys:` header) equal in order, so
ties may come in any order as SQL allows.
"""

import datetime
import decimal
import math
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import BIN, LakehouseServer

QUERIES = Path(__file__).resolve().parents[2] / "bench" / "tpch" / "queries"
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
SCALE = "0.1"
REL_TOL = 1e-6


def load_query(n):
    text = (QUERIES / f"q{n:02d}.sql").read_text()
    keys = re.search(r"^-- order keys:(.*)$", text, re.M).group(1).strip()
    return text, [int(k) for k in keys.split(",") if k.strip()]


def load_tpch(base, server):
    """TPC-H at SCALE written by tpchgen-cli under `base`/parquet and ingested into `server`
    with `lakehouse ingest`; returns a DuckDB connection with a view per table over the same
    files."""
    data = base / "parquet"
    tpchgen = Path(sys.executable).parent / "tpchgen-cli"
    subprocess.run([tpchgen, "parquet", "-s", SCALE, "--output-dir", data], check=True)
    for table in TABLES:
        out = subprocess.run(
            [BIN, "ingest", "--server", server.url, "--table", table, data / f"{table}.parquet"],
            capture_output=True, text=True, timeout=600,
        )
        assert out.returncode == 0, out.stderr
    duck = duckdb.connect()
    for table in TABLES:
        duck.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{data / (table + '.parquet')}')")
    return duck


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    base = tmp_path_factory.mktemp("tpch")
    server = LakehouseServer(base / "lakehouse", log_path=base / "server.log")
    try:
        yield server, load_tpch(base, server)
    finally:
        server.stop()


class Dec(float):
    """A decimal result as a float that remembers the size of its last digit."""

    def __new__(cls, d):
        obj = super().__new__(cls, float(d))
        obj.unit = 10.0 ** d.as_tuple().exponent
        return obj


def jdbc_readable(t):
    """Types the Arrow Flight SQL JDBC driver reads: no view, large or dictionary types."""
    import pyarrow.types as pt
    return (pt.is_boolean(t) or pt.is_integer(t) or pt.is_float32(t) or pt.is_float64(t)
            or pt.is_decimal128(t) or pt.is_string(t) or pt.is_binary(t) or pt.is_date32(t)
            or pt.is_timestamp(t) or pt.is_null(t))


def value(v):
    if isinstance(v, decimal.Decimal):
        return Dec(v)
    return v


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        unit = max(getattr(a, "unit", 0.0), getattr(b, "unit", 0.0))
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=max(unit, 1e-9))
    if isinstance(a, datetime.datetime) or isinstance(b, datetime.datetime):
        return a == b
    return a == b


def sort_key(row):
    # Numbers rounded to 6 significant digits, so that float noise does not reorder rows.
    return tuple(
        (0, "") if v is None
        else (1, float(f"{v:.6g}")) if isinstance(v, (int, float))
        else (2, str(v))
        for v in row
    )


def rows(table):
    columns = [[value(v) for v in c.to_pylist()] for c in table.columns]
    return list(zip(*columns))


def rows_equal(ours, theirs):
    return len(ours) == len(theirs) and all(
        all(same(a, b) for a, b in zip(r, s)) for r, s in zip(ours, theirs)
    )


def test_all_rows_arrived(tpch):
    server, duck = tpch
    with server.connect() as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"SELECT count(*) AS n FROM {table}")
            ours = cur.fetch_arrow_table().column("n")[0].as_py()
            assert ours == duck.sql(f"SELECT count(*) AS n FROM {table}").to_arrow_table().column("n")[0].as_py(), table
        # tpchgen-cli wrote string_view; nothing but plain strings comes back.
        assert str(conn.adbc_get_table_schema("lineitem").field("l_comment").type) == "string"


@pytest.mark.parametrize("n", range(1, 23), ids=lambda n: f"q{n:02d}")
def test_query_matches_duckdb(tpch, n):
    server, duck = tpch
    sql, order_keys = load_query(n)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        ours_table = cur.fetch_arrow_table()
    theirs_table = duck.sql(sql).to_arrow_table()
    for field in ours_table.schema:
        assert jdbc_readable(field.type), f"q{n:02d}: column {field.name} is {field.type}"
    assert ours_table.num_columns == theirs_table.num_columns
    ours, theirs = rows(ours_table), rows(theirs_table)
    assert len(ours) == len(theirs), f"q{n:02d}: {len(ours)} rows, DuckDB {len(theirs)}"
    assert len(ours) > 0, f"q{n:02d} returned no rows: the parameters do not test anything"
    if order_keys:
        keys_ours = [tuple(r[k] for k in order_keys) for r in ours]
        keys_theirs = [tuple(r[k] for k in order_keys) for r in theirs]
        assert rows_equal(keys_ours, keys_theirs), f"q{n:02d}: order differs"
    assert rows_equal(sorted(ours, key=sort_key), sorted(theirs, key=sort_key)), (
        f"q{n:02d}: rows differ\nours:   {ours[:5]}\nDuckDB: {theirs[:5]}"
    )
