"""Distributed TPC-H on one machine (see run.sh).

1. A `lakehouse serve` over fresh storage ingests the TPC-H Parquet files (`lakehouse ingest`).
2. For each worker count N (default 0, 1, 2, 4): N `lakehouse worker` processes and a
   coordinator (`lakehouse serve --workers ...`; N = 0: a plain server) over that storage. Each
   query runs once untimed and RUNS times through ADBC (Flight SQL), timed from `execute` until
   the whole result is in the client; the table shows the median in ms. The cores do not grow
   with the workers here, so the ratio to N = 0 is the cost of distribution per query.
3. With the most workers, `EXPLAIN ANALYZE` of each query gives datafusion-distributed's
   per-stage metrics: `bytes_scanned` of the Parquet scans in each stage (bytes read from
   storage) and `bytes_transferred` of each network boundary (bytes a stage sent on to the next
   over gRPC, Arrow IPC).
4. A projection on paper for SF 100 on M machines (4 and 16) with C cores each, from those
   bytes (x100) and the single-node time (x100): compute = t(N=0) x 100 x 2 cores / (M x C);
   storage = scanned x 100 / (M x storage bandwidth); network = shuffled x 100 / (M x network
   bandwidth); projected = the largest of the three (they overlap in a pipelined plan) plus the
   measured per-query distribution overhead (t(N=max) - t(N=0), floored at 0). Assumptions are
   printed with the table; it is a model, not a measurement.
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import timed, start_lakehouse, stop_lakehouse  # noqa: E402

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
QUERIES = Path(__file__).resolve().parent.parent / "tpch" / "queries"
RUNS = 3
SECRET = {"LAKEHOUSE_DISTRIBUTED_SECRET": "bench-cluster-secret"}
# The projection's machine: cores, object-storage read and network bandwidth, bytes/s.
CORES = 16
STORAGE_BYTES_PER_S = 1.0e9
NETWORK_BYTES_PER_S = 1.25e9  # 10 GbE
SCALE_UP = 100

COUNT_UNITS = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}  # DataFusion's human_readable_count
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}  # ..._size




def stage_bytes(plan):
    """{stage: [scanned, sent]} from an EXPLAIN ANALYZE distributed plan: `bytes_scanned` of
    the scans inside each stage's box (stage 0 = the coordinator's head stage) and the
    `bytes_transferred` of the network boundary reading each stage (`[Stage k] => ...`)."""
    stages = {0: [0.0, 0.0]}
    current = 0
    for line in plan.splitlines():
        header = re.search(r"─ Stage (\d+) ──", line)
        if header:
            current = int(header.group(1))
            stages.setdefault(current, [0.0, 0.0])
            continue
        for value, unit in re.findall(r"bytes_scanned=([\d.]+)\s?([KMBT]?)\b", line):
            stages[current][0] += float(value) * COUNT_UNITS[unit]
        boundary = re.search(r"\[Stage (\d+)\] =>", line)
        sent = re.search(r"bytes_transferred=([\d.]+) (B|KB|MB|GB|TB)", line)
        if boundary and sent:
            stages.setdefault(int(boundary.group(1)), [0.0, 0.0])
            stages[int(boundary.group(1))][1] += float(sent.group(1)) * SIZE_UNITS[sent.group(2)]
    return stages


def mb(n):
    return f"{n / 1e6:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", required=True)
    ap.add_argument("--data", required=True, help="the TPC-H Parquet files (tpchgen-cli)")
    ap.add_argument("--storage", required=True, help="fresh Lakehouse storage directory")
    ap.add_argument("--bin", required=True, help="the lakehouse binary (release)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    ap.add_argument("--bytes-per-task", type=int,
                    help="[distributed] bytes_per_task of the coordinator (default: the server's, 16 MiB)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = Path(args.data)
    logs = Path(args.storage).parent / "distributed-logs"
    logs.mkdir(parents=True, exist_ok=True)

    proc, url = start_lakehouse(args.bin, args.storage, open(logs / "ingest.log", "w"))
    try:
        for table in TABLES:
            subprocess.run([args.bin, "ingest", "--server", url, "--table", table,
                            str(data / f"{table}.parquet")], check=True, capture_output=True)
    finally:
        stop_lakehouse(proc)

    queries = {n: (QUERIES / f"q{n:02d}.sql").read_text() for n in range(1, 23)}
    times = {}  # worker count -> {query: ms}
    analyzed = {}  # query -> {stage: [scanned, sent]}
    most = max(args.workers)
    for count in args.workers:
        started = []
        try:
            workers = []
            for i in range(count):
                w, w_url = start_lakehouse(args.bin, args.storage, open(logs / f"w{count}-{i}.log", "w"),
                                           command="worker", env=SECRET)
                started.append(w)
                workers.append(w_url)
            extra = ["--workers", ",".join(workers)] if workers else []
            if workers and args.bytes_per_task:
                config = logs / "coordinator.toml"
                config.write_text(f"[distributed]\nbytes_per_task = {args.bytes_per_task}\n")
                extra += ["--config", str(config)]
            proc, url = start_lakehouse(args.bin, args.storage, open(logs / f"c{count}.log", "w"),
                                        args=extra, env=SECRET)
            started.append(proc)
            times[count] = {}
            with flight_sql.connect(url, autocommit=True) as conn:
                for n, sql in queries.items():
                    def run(sql=sql):
                        with conn.cursor() as cur:
                            cur.execute(sql)
                            return cur.fetch_arrow_table()

                    times[count][n] = timed(run, RUNS)
                    if count == most and count > 0:
                        with conn.cursor() as cur:
                            cur.execute("EXPLAIN ANALYZE " + sql)
                            plan = "\n".join(cur.fetch_arrow_table().column("plan").to_pylist())
                        analyzed[n] = stage_bytes(plan) if "DistributedExec" in plan else {}
                    print(f"{count} workers q{n:02d}: {times[count][n]:.0f} ms", file=sys.stderr)
        finally:
            for p in reversed(started):
                stop_lakehouse(p)

    counts = args.workers
    base = counts[0]
    lines = [
        f"TPC-H SF {args.scale} on one machine ({os.cpu_count()} cores), one coordinator and N "
        f"`lakehouse worker` processes over one local storage directory; medians of {RUNS} runs "
        "after a warm-up, ms, through ADBC (Flight SQL). Release build.",
        "",
        "| query | " + " | ".join(f"{c} workers" for c in counts) + " | "
        + " | ".join(f"{c} / {base}" for c in counts[1:]) + " |",
        "|---|" + "---:|" * (2 * len(counts) - 1),
    ]
    for n in queries:
        cells = [f"{times[c][n]:.0f}" for c in counts]
        ratios = [f"{times[c][n] / times[base][n]:.2f}" for c in counts[1:]]
        lines.append(f"| Q{n:02d} | " + " | ".join(cells + ratios) + " |")
    sums = [sum(times[c].values()) for c in counts]
    lines.append("| **sum** | " + " | ".join(f"{s:.0f}" for s in sums) + " | "
                 + " | ".join(f"{s / sums[0]:.2f}" for s in sums[1:]) + " |")

    if analyzed:
        lines += [
            "",
            f"Bytes per stage with {most} workers, from EXPLAIN ANALYZE (MB; stage 0 is the "
            "coordinator's; scanned = Parquet bytes read from storage, sent = bytes the stage "
            "sent on over the network to the next):",
            "",
            "| query | stages | scanned MB | sent MB | per stage: scanned / sent MB |",
            "|---|---:|---:|---:|---|",
        ]
        for n, stages in analyzed.items():
            if not stages:
                lines.append(f"| Q{n:02d} | not distributed | | | |")
                continue
            scanned = sum(s for s, _ in stages.values())
            sent = sum(t for _, t in stages.values())
            detail = "; ".join(f"S{k}: {mb(s)} / {mb(t)}" for k, (s, t) in sorted(stages.items()))
            lines.append(f"| Q{n:02d} | {len(stages)} | {mb(scanned)} | {mb(sent)} | {detail} |")

        lines += [
            "",
            f"Projection on paper for SF {float(args.scale) * SCALE_UP:g} on M machines of {CORES} "
            f"cores, {STORAGE_BYTES_PER_S / 1e9:g} GB/s from object storage and "
            f"{NETWORK_BYTES_PER_S / 1e9:g} GB/s of network each: the largest of compute "
            f"(t(0 workers) x {SCALE_UP} x {os.cpu_count()} cores / (M x {CORES})), storage "
            f"(scanned x {SCALE_UP} / (M x storage)) and network (sent x {SCALE_UP} / (M x "
            f"network)), plus the measured distribution overhead max(0, t({most}) - t(0)). "
            "Seconds. A model from the measured bytes, not a measurement.",
            "",
            "| query | compute 4 | storage 4 | network 4 | **projected 4** | compute 16 | "
            "storage 16 | network 16 | **projected 16** |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        totals = {4: 0.0, 16: 0.0}
        for n, stages in analyzed.items():
            if not stages:
                lines.append(f"| Q{n:02d} | not distributed | | | | | | | |")
                continue
            scanned = sum(s for s, _ in stages.values())
            sent = sum(t for _, t in stages.values())
            overhead = max(0.0, times[most][n] - times[base][n]) / 1000
            cells = []
            for machines in (4, 16):
                compute = times[base][n] / 1000 * SCALE_UP * (os.cpu_count() or 2) / (machines * CORES)
                storage = scanned * SCALE_UP / (machines * STORAGE_BYTES_PER_S)
                network = sent * SCALE_UP / (machines * NETWORK_BYTES_PER_S)
                projected = max(compute, storage, network) + overhead
                totals[machines] += projected
                cells += [f"{compute:.2f}", f"{storage:.2f}", f"{network:.2f}", f"**{projected:.2f}**"]
            lines.append(f"| Q{n:02d} | " + " | ".join(cells) + " |")
        lines.append(f"| **sum** | | | | **{totals[4]:.1f}** | | | | **{totals[16]:.1f}** |")

    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
