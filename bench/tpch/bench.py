"""Times the 22 TPC-H queries on three engines over the same Parquet files (see run.sh).

- Lakehouse: the release `lakehouse serve` on a free local port, tables ingested from the
  Parquet files with `lakehouse ingest`; each query through ADBC (Flight SQL), timed from
  `execute` until the whole Arrow result is in the client.
- datafusion-python: a SessionContext with the files registered; `sql(q).to_arrow_table()`.
- DuckDB: views over `read_parquet`; `sql(q).to_arrow_table()`.

Every engine runs each query once untimed (warm-up) and then RUNS times; the table shows the
median in milliseconds and Lakehouse's ratio to each in-process engine (>1 = Lakehouse slower).
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import datafusion
import duckdb
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import timed, start_lakehouse  # noqa: E402

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
QUERIES = Path(__file__).resolve().parent / "queries"
RUNS = 3




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = Path(args.data)

    log = open(Path(args.storage).parent / "server.log", "a")
    proc, url = start_lakehouse(args.bin, args.storage, log)
    try:
        with flight_sql.connect(url, autocommit=True) as conn:
            objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        existing = {
            t["table_name"]
            for c in objects
            for s in c["catalog_db_schemas"] or []
            for t in s["db_schema_tables"] or []
        }
        ingest_ms = {}
        ingest_rows = {}
        for table in TABLES:
            if table in existing:
                continue
            start = time.perf_counter()
            out = subprocess.run([args.bin, "ingest", "--server", url, "--table", table,
                                  str(data / f"{table}.parquet")], check=True,
                                 capture_output=True, text=True)
            ingest_ms[table] = (time.perf_counter() - start) * 1000
            ingest_rows[table] = int(out.stdout.split(" rows")[0].rsplit(" ", 1)[-1])

        df = datafusion.SessionContext()
        duck = duckdb.connect()
        for table in TABLES:
            path = str(data / f"{table}.parquet")
            df.register_parquet(table, path)
            duck.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")

        rows = []
        with flight_sql.connect(url, autocommit=True) as conn:

            def select_one():
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    return cur.fetch_arrow_table()

            round_trip = statistics.median(timed(select_one) for _ in range(5))
            for n in range(1, 23):
                sql = (QUERIES / f"q{n:02d}.sql").read_text()

                def lakehouse():
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        return cur.fetch_arrow_table()

                ours = timed(lakehouse, RUNS)
                theirs_df = timed(lambda: df.sql(sql).to_arrow_table(), RUNS)
                theirs_duck = timed(lambda: duck.sql(sql).to_arrow_table(), RUNS)
                rows.append((n, ours, theirs_df, theirs_duck))
                print(f"q{n:02d}: lakehouse {ours:.0f} ms, datafusion {theirs_df:.0f} ms, "
                      f"duckdb {theirs_duck:.0f} ms", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))
    lines = [
        f"TPC-H SF {args.scale}, {os.cpu_count()} cores; medians of {RUNS} runs after a warm-up, ms.",
        f"datafusion-python {datafusion.__version__}, DuckDB {duckdb.__version__}; "
        "Lakehouse = release build, queries over Flight SQL with the ADBC driver.",
        "",
        "| query | Lakehouse (Flight SQL) | datafusion-python | DuckDB | Lakehouse / DataFusion | Lakehouse / DuckDB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for n, ours, d, k in rows:
        lines.append(f"| Q{n:02d} | {ours:.0f} | {d:.0f} | {k:.0f} | {ours / d:.2f} | {ours / k:.2f} |")
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    lines.append(f"| **sum** | {total[0]:.0f} | {total[1]:.0f} | {total[2]:.0f} | "
                 f"{total[0] / total[1]:.2f} | {total[0] / total[2]:.2f} |")
    lines.append(f"| **geo. mean of ratios** | | | | {geo([r[1] / r[2] for r in rows]):.2f} | "
                 f"{geo([r[1] / r[3] for r in rows]):.2f} |")
    lines += ["", f"Round trip of `SELECT 1` through ADBC (GetFlightInfo + DoGet): {round_trip:.1f} ms."]
    if ingest_ms:
        total_rows, total_ms = sum(ingest_rows.values()), sum(ingest_ms.values())
        lines += ["", "Ingest with `lakehouse ingest` (Parquet from tpchgen-cli, one CLI call per "
                  f"table): {total_rows} rows in {total_ms / 1000:.1f} s "
                  f"({total_rows / total_ms * 1000:,.0f} rows/s); lineitem "
                  f"{ingest_rows['lineitem']} rows in {ingest_ms['lineitem'] / 1000:.1f} s."]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
