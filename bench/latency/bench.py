"""Latency of small queries (see run.sh): Lakehouse over Flight SQL (ADBC, release build) beside
DuckDB and datafusion-python in-process on the same Parquet files.

- `SELECT 1`: the whole round trip (GetFlightInfo + DoGet for Lakehouse).
- Point lookup (`people`, 15,000 rows, by id) and a small aggregate (GROUP BY city): hot = p50 /
  p99 of repeated runs; cold = the first run on a freshly started server (median of 3 starts).
- The four staffing reference queries (gen.py's tables): p50 / p99.

Each Lakehouse sample is timed from `execute` until the whole Arrow result is in the client.
Answers are compared across the three engines.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import datafusion
import duckdb
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import start_lakehouse as start, stop_lakehouse as stop  # noqa: E402

TABLES = ["people", "candidates", "clients", "job_orders", "placements", "timesheets",
          "call_log", "email_log"]
POINT = "SELECT id, name, city, age FROM people WHERE id = {id}"
AGGREGATE = "SELECT city, count(*) AS n, avg(age) AS age FROM people GROUP BY city ORDER BY city"
REFERENCE = {
    "candidate search (skill, city, availability)":
        "SELECT id, name, phone, available_from FROM candidates "
        "WHERE skills LIKE '%python%' AND city = 'Austin' "
        "AND available_from <= DATE '2025-06-01' ORDER BY available_from, id LIMIT 50",
    "revenue and margin by client (timesheets)":
        "SELECT c.company, round(sum(t.bill_total), 2) AS revenue, "
        "round(sum(t.bill_total - t.pay_total), 2) AS margin "
        "FROM timesheets t JOIN placements p ON t.placement_id = p.id "
        "JOIN job_orders j ON p.job_id = j.id JOIN clients c ON j.client_id = c.id "
        "WHERE t.approved GROUP BY c.company ORDER BY revenue DESC, c.company LIMIT 20",
    "called 5+ times, never placed":
        "SELECT c.id, c.name, count(*) AS calls FROM call_log l "
        "JOIN candidates c ON c.id = l.candidate_id "
        "WHERE NOT EXISTS (SELECT 1 FROM placements p WHERE p.candidate_id = c.id) "
        "GROUP BY c.id, c.name HAVING count(*) >= 5 ORDER BY calls DESC, c.id LIMIT 50",
    "margin by vertical":
        "SELECT c.vertical, round(sum(t.bill_total - t.pay_total) / sum(t.bill_total), 4) "
        "AS margin FROM timesheets t JOIN placements p ON t.placement_id = p.id "
        "JOIN job_orders j ON p.job_id = j.id JOIN clients c ON j.client_id = c.id "
        "GROUP BY c.vertical ORDER BY c.vertical",
}


def samples(fn, runs):
    fn()  # warm-up
    out = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def p(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def rows_of(table):
    return [tuple(r.values()) for r in table.to_pylist()]


def close(a, b):
    """Equal answers, floats to 6 significant digits."""
    norm = lambda rows: [tuple(round(v, 6 - len(str(int(abs(v))))) if isinstance(v, float) else v
                               for v in r) for r in rows]
    return norm(a) == norm(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    log = open(Path(args.storage).parent / "server.log", "a")

    proc, url = start(args.bin, args.storage, log)
    for table in TABLES:
        subprocess.run([args.bin, "ingest", "--server", url, "--table", table,
                        str(args.data / f"{table}.parquet")], check=True, capture_output=True)
    stop(proc)

    df = datafusion.SessionContext()
    duck = duckdb.connect()
    for table in TABLES:
        path = str(args.data / f"{table}.parquet")
        df.register_parquet(table, path)
        duck.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
    ids = [random.Random(7).randint(1, 15_000) for _ in range(args.runs + 1)]

    # Cold: the first point lookup and aggregate on a freshly started server.
    cold_point, cold_agg = [], []
    for _ in range(3):
        proc, url = start(args.bin, args.storage, log)
        with flight_sql.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            t = time.perf_counter()
            cur.execute(POINT.format(id=ids[0]))
            cur.fetch_arrow_table()
            cold_point.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            cur.execute(AGGREGATE)
            cur.fetch_arrow_table()
            cold_agg.append((time.perf_counter() - t) * 1000)
        stop(proc)

    proc, url = start(args.bin, args.storage, log)
    results = []
    try:
        with flight_sql.connect(url, autocommit=True) as conn, conn.cursor() as cur:

            def ours(sql_of):
                def run(i=0):
                    cur.execute(sql_of(i))
                    return cur.fetch_arrow_table()
                return run

            def measure(name, sql_of, check=True):
                lake = samples(ours(sql_of), args.runs)
                dk = samples(lambda i=0: duck.sql(sql_of(i)).to_arrow_table(), args.runs)
                dfp = samples(lambda i=0: df.sql(sql_of(i)).to_arrow_table(), args.runs)
                if check:
                    a = rows_of(ours(sql_of)())
                    b = rows_of(duck.sql(sql_of(0)).to_arrow_table())
                    c = rows_of(df.sql(sql_of(0)).to_arrow_table())
                    assert close(a, b) and close(a, c), (name, a[:3], b[:3], c[:3])
                results.append((name, p(lake, .5), p(lake, .99), p(dk, .5), p(dfp, .5)))
                print(f"{name}: lakehouse p50 {p(lake, .5):.2f} ms", file=sys.stderr)

            measure("SELECT 1", lambda i: "SELECT 1", check=False)
            measure("point lookup, hot", lambda i: POINT.format(id=ids[i + 1 if i else 0]))
            measure("small aggregate, hot", lambda i: AGGREGATE)
            for name, sql in REFERENCE.items():
                measure(name, lambda i, sql=sql: sql)
    finally:
        stop(proc)

    lines = [
        f"{os.cpu_count()} cores; {args.runs} runs after a warm-up; ms. Lakehouse = release build "
        "over Flight SQL (ADBC driver), timed from execute until the whole result is in the "
        f"client; DuckDB {duckdb.__version__} and datafusion-python {datafusion.__version__} "
        "in-process over the same data. Answers checked equal across the three.",
        "",
        "| query | Lakehouse p50 | Lakehouse p99 | DuckDB p50 | datafusion-python p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, l50, l99, d50, f50 in results:
        lines.append(f"| {name} | {l50:.2f} | {l99:.2f} | {d50:.2f} | {f50:.2f} |")
    lines.append(f"| point lookup, cold (first query after start; median of 3) | "
                 f"{statistics.median(cold_point):.2f} | | | |")
    lines.append(f"| small aggregate, cold (second query after start) | "
                 f"{statistics.median(cold_agg):.2f} | | | |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
