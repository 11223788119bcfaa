"""Row-level change benchmark: Lakehouse (release build, ADBC over Flight SQL, local storage
with fsync) beside DuckDB in-process on the same rows. See run.sh. Prints a Markdown table and
writes it to --out.

Measured per operation: latency (median of the repeats), bytes the commit wrote (objects new
under the table's data/ and deletes/ folders) against the table's size, and that the next
query sees the change. The fsync cost per commit comes from `strace -f -c` on a second server
running the one-row updates (fsync count and seconds per commit)."""

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import start_lakehouse, stop_lakehouse as stop  # noqa: E402


def start(binary, storage, log, prefix=()):
    """The server with automatic compaction off, so each measured step is alone."""
    return start_lakehouse(binary, storage, log, ["--auto-compact", "false"], prefix)


def ms(fn, repeat=1):
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def objects(storage, table):
    root = Path(storage) / "tables" / "public" / table
    found = {}
    for sub in ("data", "deletes"):
        if (root / sub).exists():
            for p in (root / sub).iterdir():
                found[str(p)] = p.stat().st_size
    return found


def manifest_bytes(storage, table):
    manifests = sorted((Path(storage) / "tables" / "public" / table / "_manifests").iterdir())
    return manifests[-1].stat().st_size


def manifest_files(storage, table):
    """Data files the table's newest manifest lists."""
    import json
    manifests = sorted((Path(storage) / "tables" / "public" / table / "_manifests").iterdir())
    return len(json.loads(manifests[-1].read_text())["files"])


def written(storage, table, fn):
    """Runs fn; returns (its result, bytes of new objects, bytes of the table's objects)."""
    before = objects(storage, table)
    result = fn()
    after = objects(storage, table)
    new = sum(size for path, size in after.items() if path not in before)
    return result, new, sum(after.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", required=True)
    ap.add_argument("--many-files", type=int, default=10000)
    ap.add_argument("--data", required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = Path(args.data)
    storage = Path(args.storage)
    storage.mkdir(parents=True, exist_ok=True)
    log = open(storage.parent / "mutations-server.log", "a")
    proc, url = start(args.bin, storage, log)
    rows = []
    duck = duckdb.connect()

    def row(name, lakehouse_ms, duck_ms="", wrote="", size="", note=""):
        rows.append((name, lakehouse_ms, duck_ms, wrote, size, note))
        print(rows[-1], flush=True)

    try:
        conn = flight_sql.connect(url, autocommit=True)
        cur = conn.cursor()

        def sql(text):
            cur.execute(text)
            return cur.fetchall()

        # 1. One row by key in a 15,000-row table.
        sql("CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR, city VARCHAR, "
            "PRIMARY KEY (id))")
        sql("INSERT INTO people SELECT value, concat('name ', value), concat('city ', value % 97) "
            "FROM generate_series(1, 15000)")
        duck.execute("CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR, city VARCHAR)")
        duck.execute("INSERT INTO people SELECT i, 'name ' || i, 'city ' || (i % 97) "
                     "FROM range(1, 15001) t(i)")
        counter = iter(range(10**9))

        def update_one():
            return sql(f"UPDATE people SET city = 'Paris {next(counter)}' WHERE id = 4242")

        (t, _), new, size = written(storage, "people", lambda: ms(update_one))
        lat, _ = ms(update_one, repeat=20)
        seen = sql("SELECT city FROM people WHERE id = 4242")[0][0]
        dlat, _ = ms(lambda: duck.execute("UPDATE people SET city = 'Paris' WHERE id = 4242"),
                     repeat=20)
        row("UPDATE 1 row by key, 15,000 rows", f"{lat:.1f}", f"{dlat:.2f}", f"{new:,}",
            f"{size:,}", f"next query sees it: {seen.startswith('Paris')}")

        # TPC-H tables from the same Parquet files.
        for table in ("lineitem", "orders"):
            subprocess.run([args.bin, "ingest", "--server", url, "--table", table,
                            str(data / f"{table}.parquet")], check=True, capture_output=True)
            duck.execute(f"CREATE TABLE {table} AS SELECT * FROM "
                         f"read_parquet('{data / (table + '.parquet')}')")
        total = sql("SELECT count(*) FROM lineitem")[0][0]

        def update_lineitem():
            return sql("UPDATE lineitem SET l_comment = 'changed' "
                       "WHERE l_orderkey = 1 AND l_linenumber = 1")

        (_, _), new, size = written(storage, "lineitem", lambda: ms(update_lineitem))
        lat, _ = ms(update_lineitem, repeat=5)
        seen = sql("SELECT l_comment FROM lineitem WHERE l_orderkey = 1 AND l_linenumber = 1")
        dlat, _ = ms(lambda: duck.execute("UPDATE lineitem SET l_comment = 'changed' "
                                          "WHERE l_orderkey = 1 AND l_linenumber = 1"), repeat=5)
        row(f"UPDATE 1 row of lineitem ({total:,} rows)", f"{lat:.0f}", f"{dlat:.1f}",
            f"{new:,}", f"{size:,}", f"next query sees it: {seen == [('changed',)]}")

        (t, deleted), new, size = written(storage, "lineitem", lambda: ms(
            lambda: sql("DELETE FROM lineitem WHERE l_orderkey % 100 = 0")))
        dlat, _ = ms(lambda: duck.execute("DELETE FROM lineitem WHERE l_orderkey % 100 = 0"))
        left = sql("SELECT count(*) FROM lineitem")[0][0]
        row("DELETE 1 % of lineitem", f"{t:.0f}", f"{dlat:.0f}", f"{new:,}", f"{size:,}",
            f"{deleted[0][0]:,} rows; {left:,} left")

        changes = ("SELECT o_orderkey, o_totalprice + 1 AS price FROM orders "
                   "WHERE o_orderkey % 150 = 0 LIMIT 10000")
        sql(f"CREATE TABLE changes AS {changes}")
        duck.execute(f"CREATE TABLE changes AS {changes}")
        merge = ("MERGE INTO orders USING changes ON orders.o_orderkey = changes.o_orderkey "
                 "WHEN MATCHED THEN UPDATE SET o_totalprice = changes.price")
        (t, merged), new, size = written(storage, "orders", lambda: ms(lambda: sql(merge)))
        dlat, _ = ms(lambda: duck.execute(merge))
        row("MERGE 10,000 changed rows into orders", f"{t:.0f}", f"{dlat:.0f}", f"{new:,}",
            f"{size:,}", f"{merged[0][0]:,} rows")

        # 1,000 single-row appends, then OPTIMIZE.
        sql("CREATE TABLE events (id BIGINT NOT NULL, v VARCHAR)")
        for i in range(1000):
            sql(f"INSERT INTO events VALUES ({i}, 'event {i}')")

        def point():
            return sql("SELECT v FROM events WHERE id = 777")

        before_files = manifest_files(storage, "events")
        before_manifest = manifest_bytes(storage, "events")
        before_lat, _ = ms(point, repeat=10)
        t, _ = ms(lambda: sql("OPTIMIZE events"))
        after_lat, _ = ms(point, repeat=10)
        row("1,000 single-row appends: manifest files / manifest bytes / point query ms",
            f"{before_files} / {before_manifest:,} / {before_lat:.1f}", "", "", "",
            f"after OPTIMIZE ({t:.0f} ms): {manifest_files(storage, 'events')} / "
            f"{manifest_bytes(storage, 'events'):,} / {after_lat:.1f}")

        # A point query on a table of many small files (statistics prune them) and of 10.
        for name, files in (("few", 10), ("many", args.many_files)):
            sql(f"CREATE TABLE {name} (id BIGINT NOT NULL, v VARCHAR)")
            for i in range(files):
                sql(f"INSERT INTO {name} VALUES ({i}, 'value {i}')")
        few, _ = ms(lambda: sql("SELECT v FROM few WHERE id = 7"), repeat=10)
        many, _ = ms(lambda: sql(f"SELECT v FROM many WHERE id = {args.many_files // 2}"),
                     repeat=10)
        row(f"point query: {args.many_files:,}-file table vs 10-file table",
            f"{many:.1f} vs {few:.1f}", "", "", "", f"ratio {many / few:.2f}")
        conn.close()
    finally:
        stop(proc)

    # fsync cost per commit: the one-row update again, on a server under strace -c.
    traced = storage.parent / "mutations-fsync"
    shutil.rmtree(traced, ignore_errors=True)
    summary = storage.parent / "strace-summary.txt"
    proc, url = start(args.bin, traced, log,
                      prefix=("strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o",
                              str(summary)))
    commits = 50
    try:
        with flight_sql.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE p (id BIGINT NOT NULL, v VARCHAR)")
            cur.execute("INSERT INTO p SELECT value, 'x' FROM generate_series(1, 15000)")
            for i in range(commits):
                cur.execute(f"UPDATE p SET v = 'y{i}' WHERE id = 42")
                cur.fetchall()
    finally:
        stop(proc, prefixed=True)
    for line in summary.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] == "fsync":
            seconds, calls = float(parts[1]), int(parts[3])
            row("fsync per commit (one-row UPDATE, 15,000 rows)",
                f"{seconds / (commits + 2) * 1000:.2f} ms", "", "", "",
                f"{calls / (commits + 2):.1f} fsync calls per commit (strace -c)")

    header = ("| operation | Lakehouse ms | DuckDB ms | bytes written | table bytes | notes |\n"
              "|---|---|---|---|---|---|\n")
    table = header + "".join(f"| {' | '.join(map(str, r))} |\n" for r in rows)
    Path(args.out).write_text(f"# bench/mutations, TPC-H SF {args.scale}\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
