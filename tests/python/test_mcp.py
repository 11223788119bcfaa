"""`lakehouse mcp`: the Model Context Protocol server, driven by the official Python MCP SDK
(PyPI `mcp`) over stdio and Streamable HTTP, against a real server with the TPC-H sample and a
document table embedded by the real model server: every tool, the table resources, tool errors
carrying the server's message, read-only calls, `execute` only with --allow-writes and a write
user, and logins passed through."""

import asyncio
import os
import signal
import socket
import subprocess
import time

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import BIN, LakehouseServer, add_user, free_port
from test_documents import PLANTED, run_ingest

READ_TOOLS = {"list_tables", "describe_table", "query", "vector_search", "hybrid_search", "rag",
              "nl2sql"}


def stdio(url, *args, env=None):
    """`lakehouse mcp --server URL ARGS` as a stdio MCP server."""
    return StdioServerParameters(command=BIN, args=["mcp", "--server", url, *args],
                                 env={"RUST_LOG": "warn", **(env or {})})


def text(result):
    return "".join(block.text for block in result.content if block.type == "text")


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=600))


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory, model_server):
    """A server with the TPC-H sample (0.01) and a document table `docs` (the planted
    facilities handbook, embedded by MiniLM, with a full-text index)."""
    base = tmp_path_factory.mktemp("mcp")
    config = base / "lakehouse.toml"
    config.write_text(model_server.embedding_toml() + model_server.chat_toml())
    server = LakehouseServer(base / "data", "--config", str(config), "--sample", "tpch:0.01",
                             log_path=base / "server.log")
    handbook = base / "facilities.md"
    handbook.write_text(PLANTED)
    result = run_ingest(server, "--table", "docs", "--embed", handbook)
    assert result.returncode == 0, result.stderr
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE INDEX docs_text ON docs USING FTS (text)")
    yield server
    server.stop()


def test_stdio_tools_answer_from_the_tpch_sample_and_the_document_table(mcp_server):
    with mcp_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT l_returnflag, count(*) AS n FROM lineitem GROUP BY 1 ORDER BY 1")
        flags = cur.fetchall()
        cur.execute("SELECT count(*) FROM lineitem")
        lineitems = cur.fetchone()[0]

    async def session():
        async with Client(stdio(mcp_server.url)) as client:
            assert client.server_info.name == "lakehouse"
            assert "list_tables" in client.instructions
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == READ_TOOLS, "execute is not offered without --allow-writes"
            for tool in tools.values():
                assert tool.description and tool.input_schema["type"] == "object"
            assert tools["query"].input_schema["required"] == ["sql"]
            assert "sql" in tools["query"].input_schema["properties"]

            listing = await client.call_tool("list_tables", {})
            assert not listing.is_error, text(listing)
            lines = text(listing).splitlines()
            assert lines[0] == ("schema_name | table_name | kind | rows | columns | "
                                "vector_columns | indexes")
            assert f"public | lineitem | parquet | {lineitems} | 16 | NULL | NULL" in lines
            docs = next(line for line in lines if line.startswith("public | docs |"))
            assert "| documents |" in docs and "embedding(384, cosine, minilm)" in docs
            assert "docs_text(Inverted on text)" in docs
            assert listing.structured_content == {"rows": 9, "truncated": False}

            described = await client.call_tool("describe_table", {"table": "lineitem"})
            body = text(described)
            assert "kind: parquet" in body and f"rows: {lineitems}" in body
            assert "- l_orderkey: Int64 NOT NULL" in body
            assert "- l_shipdate: Date32 NOT NULL" in body
            sample = body.split("Sample rows:\n", 1)[1].splitlines()
            assert sample[0].startswith("l_orderkey | l_partkey") and len(sample) == 4
            described = text(await client.call_tool("describe_table", {"table": "public.docs"}))
            assert "kind: documents" in described and "- embedding: FixedSizeList" in described
            assert "… (384 values)]" in described, "vectors are shortened"

            answer = await client.call_tool("query", {
                "sql": "SELECT l_returnflag, count(*) AS n FROM lineitem GROUP BY 1 ORDER BY 1"})
            assert not answer.is_error
            assert text(answer).splitlines()[:4] == [
                "l_returnflag | n", *[f"{flag} | {n}" for flag, n in flags]]
            assert answer.structured_content == {"rows": 3, "truncated": False}

            capped = await client.call_tool("query", {"sql": "SELECT * FROM lineitem",
                                                      "max_rows": 5})
            assert capped.structured_content == {"rows": 5, "truncated": True}
            assert len(text(capped).splitlines()) == 1 + 5 + 1
            assert "truncated: more rows exist" in text(capped)

            vector = await client.call_tool("vector_search", {
                "table": "docs", "query": "where are bicycles kept at night?", "k": 2})
            assert not vector.is_error, text(vector)
            assert "bicycle cellar" in text(vector) and "_distance" in text(vector)
            hybrid = await client.call_tool("hybrid_search", {"table": "docs",
                                                              "query": "bicycle cellar"})
            assert not hybrid.is_error, text(hybrid)
            assert "bicycle cellar" in text(hybrid) and "_score" in text(hybrid)
            reranked = await client.call_tool("hybrid_search", {
                "table": "docs", "query": "bicycle cellar", "k": 2, "rerank": 3})
            assert not reranked.is_error, text(reranked)
            assert "_relevance_score" in text(reranked) and "bicycle cellar" in text(reranked)
            # The handbook is one chunk: the one candidate, rated.
            assert reranked.structured_content == hybrid.structured_content

            rag = await client.call_tool("rag", {
                "question": "Where do employees keep their bicycles?", "table": "docs", "k": 2})
            assert not rag.is_error, text(rag)
            answer_text, sources = text(rag).split("\n\nSources:\n")
            assert answer_text.strip()
            assert sources.startswith("[1] {") and "bicycle" in sources

            sql = await client.call_tool("nl2sql", {"question": "How many orders are there?"})
            assert not sql.is_error, text(sql)
            assert isinstance(sql.structured_content["valid"], bool)
            assert sql.structured_content["sql"].strip()

            resources = {r.uri: r for r in (await client.list_resources()).resources}
            assert "lakehouse://public/lineitem" in resources
            assert resources["lakehouse://public/docs"].name == "public.docs"
            read = await client.read_resource("lakehouse://public/orders")
            assert "- o_orderkey: Int64 NOT NULL" in read.contents[0].text

    run(session())


def test_tool_errors_carry_the_servers_message_and_keep_the_connection(mcp_server):
    async def session():
        async with Client(stdio(mcp_server.url)) as client:
            bad = await client.call_tool("query", {"sql": "SELEC 1"})
            assert bad.is_error and text(bad).startswith("InvalidArgument: ")
            missing = await client.call_tool("query", {"sql": "SELECT * FROM nowhere"})
            assert missing.is_error and "nowhere" in text(missing), text(missing)
            for sql in ["DROP TABLE lineitem", "INSERT INTO region VALUES (9, 'X', 'y')",
                        "CREATE TABLE t AS SELECT 1 AS x"]:
                refused = await client.call_tool("query", {"sql": sql})
                assert refused.is_error, sql
                assert text(refused).startswith("PermissionDenied: ")
                assert "read-only" in text(refused), text(refused)
            execute = await client.call_tool("execute", {"sql": "DROP TABLE lineitem"})
            assert execute.is_error and "--allow-writes" in text(execute)
            unknown = await client.call_tool("describe_table", {"table": "nope"})
            assert unknown.is_error and "no table public.nope" in text(unknown)
            bad_name = await client.call_tool("describe_table", {"table": "a.b.c"})
            assert bad_name.is_error and "too many parts" in text(bad_name)
            bad_k = await client.call_tool("vector_search", {"table": "docs", "query": "x",
                                                             "k": 0})
            assert bad_k.is_error and "k is 0" in text(bad_k)
            not_lance = await client.call_tool("vector_search", {"table": "lineitem",
                                                                 "query": "x"})
            assert not_lance.is_error and "lineitem" in text(not_lance)
            # The connection is still up, and nothing was written.
            ok = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM region"})
            assert text(ok).splitlines()[1] == "5"
            assert not (await client.call_tool("list_tables", {})).is_error

    run(session())


def test_a_server_that_is_down_is_a_tool_error_not_a_dropped_connection():
    url = f"grpc://127.0.0.1:{free_port()}"

    async def session():
        async with Client(stdio(url)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS
            down = await client.call_tool("list_tables", {})
            assert down.is_error and f"cannot reach Lakehouse at {url}" in text(down)
            again = await client.call_tool("query", {"sql": "SELECT 1"})
            assert again.is_error

    run(session())


class McpHttp:
    """`lakehouse mcp --http 127.0.0.1:PORT ARGS` as a process; `url` is its endpoint."""

    def __init__(self, server_url, *args, env, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "mcp", "--server", server_url, "--http", f"127.0.0.1:{self.port}", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        for _ in range(300):
            assert self.proc.poll() is None, open(log_path).read()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(open(log_path).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0
        self.log.close()


def test_http_logins_pass_through_and_writes_need_allow_writes_and_role_write(tmp_path):
    config = tmp_path / "lakehouse.toml"
    config.write_text('[auth]\nmode = "basic"\n')
    add_user(config, "writer", "w-secret", "write")
    add_user(config, "reader", "r-secret", "read")
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server.log", login=("writer", "w-secret"))
    writer = McpHttp(server.url, "--user", "writer", "--allow-writes",
                     env={"LAKEHOUSE_PASSWORD": "w-secret"}, log_path=tmp_path / "w.log")
    reader = McpHttp(server.url, "--user", "reader", "--allow-writes",
                     env={"LAKEHOUSE_PASSWORD": "r-secret"}, log_path=tmp_path / "r.log")
    wrong = McpHttp(server.url, "--user", "writer", env={"LAKEHOUSE_PASSWORD": "nope"},
                    log_path=tmp_path / "x.log")
    try:
        async def session():
            # The initialize handshake most MCP hosts still use.
            async with Client(writer.url, mode="legacy") as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                assert tools == READ_TOOLS | {"execute"}
                made = await client.call_tool("execute", {
                    "sql": "CREATE TABLE notes (id BIGINT, body VARCHAR)"})
                assert not made.is_error, text(made)
                added = await client.call_tool("execute", {
                    "sql": "INSERT INTO notes VALUES (1, 'first'), (2, 'second')"})
                assert text(added) == "2 rows affected"
                assert added.structured_content == {"rows_affected": 2}
                # query stays read-only with --allow-writes.
                refused = await client.call_tool("query", {"sql": "DELETE FROM notes"})
                assert refused.is_error and "read-only" in text(refused)
                rows = await client.call_tool("query", {"sql": "SELECT * FROM notes ORDER BY id"})
                assert text(rows).splitlines()[:3] == ["id | body", "1 | first", "2 | second"]
            async with Client(reader.url) as client:
                seen = await client.call_tool("query", {"sql": "SELECT count(*) AS n FROM notes"})
                assert text(seen).splitlines()[1] == "2"
                denied = await client.call_tool("execute", {"sql": "DELETE FROM notes"})
                assert denied.is_error and text(denied).startswith("PermissionDenied: ")
                assert "role read" in text(denied)
            async with Client(wrong.url) as client:
                failed = await client.call_tool("list_tables", {})
                assert failed.is_error and "login failed" in text(failed), text(failed)
                assert {t.name for t in (await client.list_tools()).tools} == READ_TOOLS

        run(session())
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM notes")
            assert cur.fetchone()[0] == 2
    finally:
        for process in (writer, reader, wrong):
            process.stop()
        server.stop()


def test_bad_flags_are_refused_with_a_message(tmp_path):
    result = subprocess.run([BIN, "mcp", "--user", "ann"], capture_output=True, text=True,
                            timeout=60, env={k: v for k, v in os.environ.items()
                                             if k != "LAKEHOUSE_PASSWORD"})
    assert result.returncode == 1
    assert "--user ann needs its password in LAKEHOUSE_PASSWORD" in result.stderr
    result = subprocess.run([BIN, "mcp", "--max-rows", "0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "--max-rows" in result.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    result = subprocess.run([BIN, "mcp", "--http", str(port)], capture_output=True, text=True,
                            timeout=60)
    busy.close()
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_the_read_only_header_refuses_writes_from_any_client(server):
    import adbc_driver_flightsql.dbapi as flight_sql
    header = "adbc.flight.sql.rpc.call_header.x-lakehouse-read-only"
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x BIGINT)")
        cur.execute("INSERT INTO t VALUES (1)")
    with flight_sql.connect(server.url, db_kwargs={header: "true"}, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM t")
            assert cur.fetchone()[0] == 1
            with pytest.raises(Exception, match="read-only"):
                cur.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(Exception, match="read-only"):
                cur.adbc_ingest("t", __import__("pyarrow").table({"x": [3]}), mode="append")
    with flight_sql.connect(server.url, db_kwargs={header: "maybe"}, autocommit=True) as conn:
        with conn.cursor() as cur, pytest.raises(Exception, match="send true or false"):
            cur.execute("SELECT 1")
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone()[0] == 1
