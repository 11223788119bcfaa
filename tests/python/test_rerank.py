"""Reranking with the real chat model (SmolLM2-135M on the test model server): the `rerank()`
scalar and the `rerank` option of `vector_search`, `text_search`, `hybrid_search` and `rag`,
checked through ADBC — ratings, exactly `candidates` model calls, the order by rating, the row
cap shared with `ai()`, bad arguments refused while planning, a model server that is down,
and concurrent reranked queries."""

import concurrent.futures
import json
import re
import urllib.request

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import configured_server, free_port

DOCS = [
    "Our cafeteria serves vegetarian lasagne every Tuesday.",
    "Invoices are paid within thirty days of receipt.",
    "The Zorblax project deadline is the fourteenth of March.",
    "Kubernetes clusters are upgraded during the weekend window.",
    "The Zorblax project is staffed by four engineers from Lisbon.",
    "Python lists have a sort() method that sorts the list in place.",
    "The office is closed on public holidays.",
    "Expense reports need a receipt for every item above ten euros.",
]


@pytest.fixture
def server(tmp_path, model_server):
    server = configured_server(
        tmp_path, model_server.embedding_toml() + model_server.chat_toml(ai_max_rows=12))
    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("docs", pa.table({"doc_id": [f"doc-{i}" for i in range(len(DOCS))],
                                          "body": DOCS}), mode="create")
        cur.execute("CREATE TABLE chunks STORED AS LANCE AS SELECT doc_id, body AS text, "
                    "embed(body) AS embedding FROM docs")
        cur.execute("CREATE INDEX chunks_text ON chunks USING FTS (text)")
    yield server
    server.stop()


def chat_calls(model_server, run):
    """`run()`'s result and the chat requests the model server answered meanwhile."""
    before = model_server.stats()["chat_requests"]
    result = run()
    return result, model_server.stats()["chat_requests"] - before


def query(server, sql):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def error_of(server, sql):
    with pytest.raises(adbc_driver_manager.Error) as err:
        query(server, sql)
    return str(err.value)


# The rating prompt as docs/ai.md gives it (vector/src/rerank.rs): a system message, four
# examples as earlier turns, then the query and passage; the answer's first integer 0-10 / 10.
SYSTEM = ("Rate from 0 to 10 how relevant the passage is to the query: 0 means unrelated, 10 "
          "means it answers the query. Reply with the number only.")
EXAMPLES = [("capital of France", "Paris is the capital and largest city of France.", "10"),
            ("capital of France", "Bananas are rich in potassium.", "0"),
            ("install a package with pip",
             "Use pip install NAME to install a package from PyPI.", "9"),
            ("install a package with pip", "The Rhine flows through six countries.", "0")]


def model_rating(model_server, query_text, passage):
    """The rating SmolLM2 gives `passage` for `query_text`, asked directly (as the server asks:
    temperature 0, seed 0, 4 tokens)."""
    messages = [{"role": "system", "content": SYSTEM}]
    for q, p, rating in EXAMPLES:
        messages += [{"role": "user", "content": f"Query: {q}\nPassage: {p}"},
                     {"role": "assistant", "content": rating}]
    messages.append({"role": "user", "content": f"Query: {query_text}\nPassage: {passage}"})
    body = json.dumps({"model": "smollm2", "messages": messages, "stream": False,
                       "options": {"temperature": 0, "seed": 0, "num_predict": 4}}).encode()
    request = urllib.request.Request(f"{model_server.url}/api/chat", body,
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        text = json.load(answer)["message"]["content"]
    digits = re.search(r"\d+", text)
    return int(digits.group()) / 10 if digits and int(digits.group()) <= 10 else None


def test_rerank_returns_the_models_rating_per_row(server, model_server):
    pairs = pa.table({
        "id": [1, 2, 3, 4, 5],
        "q": ["How do I sort a list in Python?", "How do I sort a list in Python?",
              "When is the Zorblax deadline?", "When is the Zorblax deadline?",
              "When is the Zorblax deadline?"],
        "t": [DOCS[5], "The Eiffel Tower was completed in 1889.", DOCS[2], DOCS[0], None],
    })
    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("pairs", pairs, mode="create")
    sql = "SELECT id, rerank(q, t) AS score FROM pairs ORDER BY id"
    table, calls = chat_calls(model_server, lambda: query(server, sql))
    assert calls == 4, "one call per row with a text; the NULL text is not sent"
    assert table.schema.field("score").type == pa.float64()
    scores = table.column("score").to_pylist()
    assert scores[4] is None
    expected = [model_rating(model_server, q, t)
                for q, t in zip(pairs.column("q").to_pylist()[:4], pairs.column("t").to_pylist())]
    assert scores[:4] == expected, "the score is the model's rating / 10"
    assert all(s is None or 0.0 <= s <= 1.0 for s in scores), scores
    assert query(server, sql).column("score").to_pylist() == scores, "temperature 0: repeatable"
    # The model named explicitly gives the same ratings.
    named = query(server, "SELECT rerank(q, t, 'smollm2') AS s FROM pairs ORDER BY id")
    assert named.column("s").to_pylist() == scores


def test_rerank_shares_the_row_cap_with_ai_and_refuses_bad_models(server):
    with server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("many", pa.table({"t": [f"passage {i}" for i in range(13)]}),
                        mode="create")
    message = error_of(server, "SELECT rerank('q', t) FROM many")
    assert "RESOURCE_EXHAUSTED" in message or "ResourceExhausted" in message, message
    assert "ai_max_rows = 12" in message and "rerank()" in message, message
    # ai() and rerank() count together in one query: 8 + 8 > 12.
    message = error_of(server, "SELECT ai(t), rerank('q', t) FROM many LIMIT 8")
    assert "ai_max_rows = 12" in message, message
    message = error_of(server, "SELECT rerank('q', 'x', 'nope')")
    assert "nope" in message and "smollm2" in message, message
    message = error_of(server, "SELECT rerank('q', t, t) FROM many")
    assert "model must be a string literal" in message, message
    message = error_of(server, "SELECT rerank('only one argument')")
    assert "rerank" in message, message


def relevance_order(table):
    scores = table.column("_relevance_score").to_pylist()
    keys = [-1.0 if s is None else s for s in scores]
    return keys == sorted(keys, reverse=True)


def expected_top(server, question, candidates, k, function="vector_search"):
    """The k doc_ids the rerank option must return: `function`'s first `candidates` rows
    rated by `rerank()`, best rating first, equal ratings in the first stage's order, unrated
    last."""
    first = query(server, f"SELECT doc_id, rerank('{question}', text) AS rating "
                          f"FROM {function}('chunks', '{question}', {candidates})").to_pylist()
    ranked = sorted(enumerate(first), key=lambda r: (
        -(r[1]["rating"] if r[1]["rating"] is not None else -1.0), r[0]))
    return [r["doc_id"] for _, r in ranked[:k]], [r["rating"] for _, r in ranked[:k]]


def test_vector_search_reranks_exactly_the_candidates(server, model_server):
    question = "When is the Zorblax project deadline?"
    sql = (f"SELECT doc_id, text, _distance, _relevance_score FROM vector_search('chunks', "
           f"'{question}', 3, '{{\"rerank\": {{\"candidates\": 6}}}}')")
    table, calls = chat_calls(model_server, lambda: query(server, sql))
    assert calls == 6, "each of the 6 candidates rated once"
    assert table.num_rows == 3
    assert table.schema.field("_relevance_score").type == pa.float64()
    ids, ratings = expected_top(server, question, 6, 3)
    assert table.column("doc_id").to_pylist() == ids, table.to_pylist()
    assert table.column("_relevance_score").to_pylist() == ratings
    assert relevance_order(table), table.to_pylist()
    assert query(server, sql).equals(table), "temperature 0: the same ranking again"
    # The rated text column is read even when not selected; count(*) sees k rows.
    narrow = query(server, f"SELECT doc_id, _relevance_score FROM vector_search('chunks', "
                           f"'{question}', 3, '{{\"rerank\": {{\"candidates\": 6}}}}')")
    assert narrow.column("doc_id").to_pylist() == ids
    count = query(server, f"SELECT count(*) AS n FROM vector_search('chunks', '{question}', 3, "
                          f"'{{\"rerank\": {{\"candidates\": 4}}}}')")
    assert count.column("n").to_pylist() == [3]


def test_text_and_hybrid_search_rerank_and_rag_cites_the_rated_passages(server, model_server):
    question = "Zorblax project deadline"
    for function in ["text_search", "hybrid_search"]:
        sql = (f"SELECT doc_id, _score, _relevance_score FROM {function}('chunks', '{question}', "
               f"2, '{{\"rerank\": {{\"candidates\": 4, \"model\": \"smollm2\"}}}}')")
        table, calls = chat_calls(model_server, lambda: query(server, sql))
        assert table.num_rows == 2, function
        assert 2 <= calls <= 4, (function, calls)
        assert (table.column("doc_id").to_pylist(), table.column("_relevance_score").to_pylist()) \
            == expected_top(server, question, 4, 2, function), function
    question = "When is the Zorblax project deadline?"
    sql = ("SELECT answer, sources FROM rag('When is the Zorblax project deadline?', 'chunks', "
           "'{\"k\": 2, \"rerank\": {\"candidates\": 5}}')")
    table, calls = chat_calls(model_server, lambda: query(server, sql))
    assert calls == 5 + 1, "5 ratings, then the answer"
    sources = table.column("sources")[0].as_py()
    ids, ratings = expected_top(server, question, 5, 2)
    assert [s["doc_id"] for s in sources] == ids, sources
    assert [s["score"] for s in sources] == [r if r is not None else 0.0 for r in ratings]


@pytest.mark.parametrize("options, expected", [
    ('{"rerank": {"candidates": 2}}', "candidates is 2; it must be from k (3) to 100"),
    ('{"rerank": {"candidates": 101}}', "candidates is 101"),
    ('{"rerank": {"top": 5}}', "unknown field `top`"),
    ('{"rerank": {"model": "nope"}}', "nope"),
    ('{"rerank": {"text_column": "doc_id_x"}}', "no text column doc_id_x"),
    ('{"rerank": {"text_column": "embedding"}}', "no text column embedding"),
])
def test_bad_rerank_options_are_refused_while_planning(server, model_server, options, expected):
    sql = f"SELECT * FROM vector_search('chunks', 'deadline', 3, '{options}')"
    message, calls = chat_calls(model_server, lambda: error_of(server, sql))
    assert expected in message, message
    assert "vector_search" in message, message
    assert calls == 0


def test_a_vector_literal_cannot_be_reranked(server):
    vector = "[" + ", ".join(["0.01"] * 384) + "]"
    message = error_of(server, f"SELECT * FROM vector_search('chunks', {vector}, 3, "
                               "'{\"rerank\": {}}')")
    assert "needs the query as text" in message, message


def test_rerank_without_a_chat_model_and_with_the_model_server_down(tmp_path, model_server):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    no_chat = configured_server(tmp_path / "a", model_server.embedding_toml())
    try:
        message = error_of(no_chat, "SELECT rerank('q', 'passage')")
        assert "chat" in message, message
    finally:
        no_chat.stop()
    down = f"http://127.0.0.1:{free_port()}"
    server = configured_server(tmp_path / "b", model_server.embedding_toml()
                               + model_server.chat_toml(timeout_ms=1500, base_url=down))
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.adbc_ingest("docs", pa.table({"body": DOCS[:3]}), mode="create")
            cur.execute("CREATE TABLE chunks STORED AS LANCE AS SELECT body AS text, "
                        "embed(body) AS embedding FROM docs")
        message = error_of(server, "SELECT * FROM vector_search('chunks', 'deadline', 2, "
                                   "'{\"rerank\": {\"candidates\": 3}}')")
        assert "UNAVAILABLE" in message or "Unavailable" in message, message
        assert down.removeprefix("http://") in message, message
        # The server keeps serving; the search without reranking answers.
        assert query(server, "SELECT * FROM vector_search('chunks', 'deadline', 2)").num_rows == 2
    finally:
        server.stop()


def test_concurrent_reranked_searches_give_their_own_answers(server):
    questions = ["When is the Zorblax project deadline?", "How are invoices paid?"]
    sqls = [f"SELECT doc_id, _relevance_score FROM vector_search('chunks', '{q}', 2, "
            f"'{{\"rerank\": {{\"candidates\": 4}}}}')" for q in questions]
    alone = [query(server, sql) for sql in sqls]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda sql: query(server, sql), sqls * 2))
    assert together == alone * 2
