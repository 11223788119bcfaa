"""`ai()` through ADBC with the real chat model (SmolLM2-135M on the test model server): one
answer per row, repeatable at temperature 0, and the per-query row cap."""

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import configured_server


@pytest.fixture
def ai_server(tmp_path, model_server):
    server = configured_server(tmp_path, model_server.chat_toml(ai_max_rows=5))
    yield server
    server.stop()


def test_ai_answers_five_rows_and_refuses_a_query_over_the_cap(ai_server):
    with ai_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("clients", pa.table({
            "id": pa.array(range(1, 8), pa.int64()),
            "notes": [f"Client {i} asked about invoice number {100 + i}." for i in range(1, 8)],
        }), mode="create")
        # The LIMIT goes below ai(): an ORDER BY ... LIMIT on the outer query would sort after
        # calling the model for every row (and here pass the cap).
        sql = ("SELECT id, ai('Summarise in five words: ' || notes) AS summary "
               "FROM (SELECT * FROM clients ORDER BY id LIMIT 5) c ORDER BY id")
        cur.execute(sql)
        rows = cur.fetchall()
        assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
        assert all(isinstance(r[1], str) and r[1].strip() for r in rows), rows
        cur.execute(sql)
        assert cur.fetchall() == rows, "temperature 0: the same answers again"

        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT ai('Summarise: ' || notes) FROM clients")
            cur.fetchall()
        assert "ResourceExhausted" in str(err.value) or "RESOURCE_EXHAUSTED" in str(err.value), \
            err.value
        assert "ai_max_rows = 5" in str(err.value)


@pytest.fixture
def rag_server(tmp_path, model_server):
    server = configured_server(tmp_path, model_server.embedding_toml() + model_server.chat_toml())
    yield server
    server.stop()


def test_rag_cites_the_planted_document_first_and_repeats(rag_server):
    docs = [
        "Our cafeteria serves vegetarian lasagne every Tuesday.",
        "Invoices are paid within thirty days of receipt.",
        "The Zorblax project deadline is the fourteenth of March.",
        "Kubernetes clusters are upgraded during the weekend window.",
    ]
    with rag_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("docs", pa.table({"doc_id": [f"doc-{i}" for i in range(4)],
                                          "body": docs}), mode="create")
        cur.execute("CREATE TABLE chunks STORED AS LANCE AS SELECT doc_id, body AS text, "
                    "embed(body) AS embedding FROM docs")
        sql = "SELECT answer, sources FROM rag('When is the Zorblax project deadline?', 'chunks')"
        cur.execute(sql)
        answer, sources = cur.fetchone()
        assert answer.strip()
        assert sources[0]["doc_id"] == "doc-2", sources
        assert "Zorblax" in sources[0]["text"]
        cur.execute(sql)
        assert cur.fetchone()[0] == answer


def test_nl2sql_returns_the_model_sql_and_a_verdict_that_planning_agrees_with(rag_server):
    with rag_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("customers", pa.table({"id": [1, 2], "name": ["Ada", "Linus"],
                                               "country": ["UK", "FI"]}), mode="create")
        cur.execute("SELECT sql, valid, error, model FROM "
                    "nl2sql('How many customers are there in each country?')")
        rows = cur.fetchall()
        assert len(rows) == 1
        sql, valid, error, model = rows[0]
        assert sql.strip() and model == "smollm2"
        assert (error is None) == valid, rows
        # The verdict agrees with planning the SQL through ADBC (prepare plans, never runs).
        try:
            cur.adbc_prepare(sql)
            planned = sql.lstrip().lower().startswith(("select", "with", "values"))
        except adbc_driver_manager.Error:
            planned = False
        assert planned == valid, (sql, error)
        cur.execute("SELECT count(*) FROM customers")
        assert cur.fetchone() == (2,)
