"""Ingest throughput: a CSV and an NDJSON file turned into Parquet by three engines (see run.sh).

- Lakehouse: `lakehouse serve` (release) on fresh storage per file; `lakehouse ingest` timed
  from start to exit (upload, parse, Parquet, commit); peak RSS is the server's VmHWM.
- DuckDB: `COPY (SELECT * FROM read_csv_auto / read_json_auto) TO ... (FORMAT parquet)`.
- datafusion-python: `read_csv / read_json(...).write_parquet(...)`.
DuckDB and datafusion-python run in a child process each, whose peak RSS is read with wait4.
Each engine runs every file ROUNDS times; the table shows the fastest run.

Then `SELECT * FROM lineitem` (the table Lakehouse ingested from the CSV) is streamed to
pyarrow.flight and to ADBC: MB/s of Arrow data received (RecordBatch.nbytes), best of ROUNDS.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import start_lakehouse  # noqa: E402

ROUNDS = 2
NDJSON_ROWS = 2_000_000


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_inputs(work, tpchgen):
    import duckdb

    shared = Path.home() / ".cache/lakehouse/bench/tpch-sf1/parquet/lineitem.parquet"
    parquet = shared if shared.exists() else work / "parquet" / "lineitem.parquet"
    if not parquet.exists():
        (work / "parquet").mkdir(parents=True, exist_ok=True)
        subprocess.run([tpchgen, "parquet", "-s", "1", "--output-dir", str(work / "parquet")],
                       check=True)
    csv = work / "lineitem.csv"
    ndjson = work / "events.ndjson"
    con = duckdb.connect()
    if not csv.exists():
        print("writing", csv, flush=True)
        con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{csv}' (HEADER)")
    if not ndjson.exists():
        print("writing", ndjson, flush=True)
        con.execute(f"""COPY (
            SELECT *, l_extendedprice * (1 - l_discount) AS l_net,
                   year(l_shipdate) AS l_ship_year,
                   l_receiptdate - l_shipdate AS l_transit_days,
                   l_returnflag = 'R' AS l_returned
            FROM read_parquet('{parquet}') LIMIT {NDJSON_ROWS}
        ) TO '{ndjson}' (FORMAT json)""")
    return [("CSV", csv), ("NDJSON", ndjson)]


def child(engine, path, out):
    """Runs in a child process: one engine, one file; prints seconds and rows."""
    kind = "json" if path.endswith(".ndjson") else "csv"
    start = time.perf_counter()
    if engine == "duckdb":
        import duckdb

        reader = "read_json_auto" if kind == "json" else "read_csv_auto"
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM {reader}('{path}')) TO '{out}' (FORMAT parquet)")
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    else:
        import datafusion

        ctx = datafusion.SessionContext()
        df = (ctx.read_json(path, file_extension=".ndjson") if kind == "json"
              else ctx.read_csv(path))
        df.write_parquet(out)
        rows = None
    print(time.perf_counter() - start, rows)


def run_child(engine, path, out):
    proc = subprocess.Popen([sys.executable, __file__, "--child", engine, str(path), str(out)],
                            stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"{engine} failed on {path}")
    seconds, rows = output.split()
    return float(seconds), (None if rows == "None" else int(rows)), usage.ru_maxrss / 1024


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream(url, table, server_pid):
    """`SELECT * FROM table` into pyarrow.flight and ADBC, plain and with each IPC body
    compression (the x-lakehouse-ipc-compression header): best of ROUNDS as (MB of Arrow,
    seconds, server CPU seconds, client CPU seconds)."""
    import adbc_driver_flightsql.dbapi as flight_sql
    import pyarrow.flight as fl

    sql = f"SELECT * FROM {table}"
    header = "x-lakehouse-ipc-compression"

    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def field(num, data):
        return bytes([(num << 3) | 2]) + varint(len(data)) + data

    # CommandStatementQuery packed in a google.protobuf.Any, as Flight SQL clients send it.
    command = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") \
        + field(2, field(1, sql.encode()))
    client = fl.FlightClient(url.replace("grpc://", "grpc+tcp://"))

    def pyflight(codec):
        options = fl.FlightCallOptions(headers=[(header.encode(), codec.encode())])
        info = client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
        return sum(c.data.nbytes for c in client.do_get(info.endpoints[0].ticket, options))

    def adbc(codec):
        option = f"adbc.flight.sql.rpc.call_header.{header}"
        with flight_sql.connect(url, db_kwargs={option: codec}, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(sql)
                return sum(b.nbytes for b in cur.fetch_record_batch())

    results = {}
    for name, fn in [("pyarrow.flight", pyflight), ("ADBC", adbc)]:
        for codec in ["none", "lz4", "zstd"]:
            runs = []
            for _ in range(ROUNDS):
                server0, client0 = cpu_seconds(server_pid), time.process_time()
                start = time.perf_counter()
                nbytes = fn(codec)
                seconds = time.perf_counter() - start
                runs.append((nbytes / 1e6, seconds, cpu_seconds(server_pid) - server0,
                             time.process_time() - client0))
            results[(name, codec)] = min(runs, key=lambda r: r[1])
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--tpchgen", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    work = Path(args.work)
    inputs = make_inputs(work, args.tpchgen)
    rows_of = {}
    lines = ["| input | engine | seconds | MB/s | rows/s | peak RSS MB | vs DuckDB MB/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    streaming = None
    for label, path in inputs:
        size_mb = path.stat().st_size / 1e6
        results = {}
        for engine in ["duckdb", "datafusion-python"]:
            best = None
            for _ in range(ROUNDS):
                out = work / f"out-{engine}.parquet"
                seconds, rows, rss = run_child(engine, path, out)
                if rows is not None:
                    rows_of[label] = rows
                if best is None or seconds < best[0]:
                    best = (seconds, rss)
                out.unlink(missing_ok=True)
            results[engine] = best
        best = None
        for round_ in range(ROUNDS):
            storage = work / "lakehouse"
            subprocess.run(["rm", "-rf", str(storage)], check=True)
            with open(work / "server.log", "w") as log:
                proc, url = start_lakehouse(args.bin, storage, log)
                try:
                    start = time.perf_counter()
                    out = subprocess.run([args.bin, "ingest", "--server", url, "--table",
                                          "lineitem", str(path)],
                                         check=True, capture_output=True, text=True)
                    seconds = time.perf_counter() - start
                    rss = peak_rss_mb(proc.pid)
                    print(out.stdout.strip().splitlines()[-1], flush=True)
                    if best is None or seconds < best[0]:
                        best = (seconds, rss)
                    if label == "CSV" and round_ == ROUNDS - 1:
                        streaming = stream(url, "lineitem", proc.pid)
                finally:
                    proc.terminate()
                    proc.wait()
            log_text = re.sub(r"\x1b\[[0-9;]*m", "", (work / "server.log").read_text())
            streamed = "streamed=true" in log_text
            print(f"  {label} round {round_ + 1}: {seconds:.2f} s, peak RSS {rss:.0f} MB, "
                  f"decoded while uploading: {streamed}", flush=True)
        results["Lakehouse"] = best
        rows = rows_of[label]
        duck_mbs = size_mb / results["duckdb"][0]
        for engine in ["Lakehouse", "duckdb", "datafusion-python"]:
            seconds, rss = results[engine]
            name = {"duckdb": "DuckDB", "datafusion-python": "datafusion-python"}.get(engine, engine)
            lines.append(f"| {label} {size_mb:.0f} MB, {rows:,} rows | {name} | {seconds:.2f} | "
                         f"{size_mb / seconds:.0f} | {rows / seconds:,.0f} | {rss:.0f} | "
                         f"{size_mb / seconds / duck_mbs:.2f}× |")
    lines += ["", "| `SELECT * FROM lineitem` | IPC compression | MB of Arrow | seconds | MB/s | "
              "server CPU s | client CPU s |", "|---|---|---:|---:|---:|---:|---:|"]
    for (name, codec), (mb, seconds, server_cpu, client_cpu) in streaming.items():
        lines.append(f"| {name} | {codec} | {mb:.0f} | {seconds:.2f} | {mb / seconds:.0f} | "
                     f"{server_cpu:.2f} | {client_cpu:.2f} |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(
        "# Ingest throughput (bench/ingest/run.sh)\n\n"
        f"{os.cpu_count()} cores; fastest of {ROUNDS} runs per engine; "
        "DuckDB and datafusion-python in-process, Lakehouse through `lakehouse ingest` "
        "(upload over loopback included).\n\n" + table + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
