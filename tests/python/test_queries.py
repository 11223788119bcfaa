"""Read paths through real clients: ADBC (DB-API and the ADBC metadata calls) and raw pyarrow.flight."""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import LakehouseServer, proto_message
from google.protobuf import any_pb2

TPCH_COUNTS = {
    "region": 5,
    "nation": 25,
    "supplier": 100,
    "customer": 1_500,
    "part": 2_000,
    "partsupp": 8_000,
    "orders": 15_000,
    "lineitem": 60_175,
}


def test_cursor_execute_and_fetch_arrow_table(conn):
    with conn.cursor() as cur:
        for table, count in TPCH_COUNTS.items():
            cur.execute(f"SELECT count(*) AS n FROM {table}")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [count]
        cur.execute(
            "SELECT l_returnflag, l_linestatus, count(*) AS n FROM lineitem "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        t = cur.fetch_arrow_table()
        assert t.column("l_returnflag").to_pylist() == ["A", "N", "N", "R"]
        assert sum(t.column("n").to_pylist()) == TPCH_COUNTS["lineitem"]
        assert t.schema.field("l_returnflag").type == pa.string()


def test_errors_surface_with_their_status(conn):
    import adbc_driver_manager

    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.execute("SELECT * FROM no_such_table")
        assert "no_such_table" in str(e.value)
        assert "NOT_FOUND" in str(e.value) or "NotFound" in str(e.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.execute("SELEC 1")
        assert "INVALID_ARGUMENT" in str(e.value) or "InvalidArgument" in str(e.value)
        cur.execute("SELECT 1 AS ok")
        assert cur.fetch_arrow_table().column("ok").to_pylist() == [1]


def test_adbc_get_info(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Lakehouse"
    assert info["vendor_version"]


def test_adbc_get_table_types(conn):
    assert conn.adbc_get_table_types() == ["TABLE"]


def test_adbc_get_table_schema(conn):
    schema = conn.adbc_get_table_schema("orders")
    assert schema.names == [
        "o_orderkey", "o_custkey", "o_orderstatus", "o_totalprice", "o_orderdate",
        "o_orderpriority", "o_clerk", "o_shippriority", "o_comment",
    ]
    assert schema.field("o_totalprice").type == pa.decimal128(15, 2)
    assert schema.field("o_orderdate").type == pa.date32()
    assert schema.field("o_orderkey").metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"BIGINT"


def test_adbc_get_objects_at_full_depth(conn):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["lakehouse"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert "public" in schemas
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert set(TPCH_COUNTS) <= set(tables)
    assert tables["region"]["table_type"] == "TABLE"
    columns = [c["column_name"] for c in tables["region"]["table_columns"]]
    assert columns == ["r_regionkey", "r_name", "r_comment"]
    # Filtered by table name pattern.
    objects = conn.adbc_get_objects(depth="tables", table_name_filter="line%").read_all().to_pylist()
    names = [t["table_name"] for t in objects[0]["catalog_db_schemas"][0]["db_schema_tables"]]
    assert names == ["lineitem"]


def _command_statement_query(sql: str) -> bytes:
    """A Flight SQL CommandStatementQuery (FlightSql.proto, package arrow.flight.protocol.sql,
    `string query = 1`) packed in google.protobuf.Any."""
    packed = any_pb2.Any()
    packed.Pack(proto_message("arrow.flight.protocol.sql", "CommandStatementQuery",
                              query=(1, "string", sql)))
    return packed.SerializeToString()


def test_raw_pyarrow_flight_statement_query(tpch_server):
    client = flight.FlightClient(tpch_server.url)
    descriptor = flight.FlightDescriptor.for_command(
        _command_statement_query("SELECT n_name, n_regionkey FROM nation ORDER BY n_nationkey")
    )
    info = client.get_flight_info(descriptor)
    assert len(info.endpoints) == 1
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema == info.schema
    assert table.num_rows == 25
    assert table.column("n_name")[0].as_py() == "ALGERIA"
    # GetSchema on the same descriptor answers the same schema without running the query.
    assert client.get_schema(descriptor).schema == info.schema
    client.close()


COMPRESSION_HEADER = "x-lakehouse-ipc-compression"
LINEITEM_SQL = "SELECT * FROM lineitem ORDER BY l_orderkey, l_linenumber"
# Bytes of Flight data: above `LINEITEM_SQL`'s result compressed, below it plain.
RESULT_LIMIT = 7_000_000


def test_results_compressed_on_request_arrive_whole_and_smaller(tmp_path):
    # The result limit lies between the compressed and the plain size of the result, so only a
    # compressed stream fits under it: the header does change what is sent.
    server = LakehouseServer(tmp_path / "data", "--sample", "tpch:0.01",
                             "--max-result-bytes", str(RESULT_LIMIT),
                             log_path=tmp_path / "server.log")
    try:
        client = flight.FlightClient(server.url)
        descriptor = flight.FlightDescriptor.for_command(_command_statement_query(LINEITEM_SQL))

        def fetch(codec):
            headers = [(COMPRESSION_HEADER.encode(), codec.encode())] if codec else []
            options = flight.FlightCallOptions(headers=headers)
            info = client.get_flight_info(descriptor, options)
            return client.do_get(info.endpoints[0].ticket, options).read_all()

        with pytest.raises(pa.ArrowException) as plain:
            fetch(None)
        assert "max_result_bytes" in str(plain.value)
        zstd, lz4 = fetch("zstd"), fetch("LZ4")
        assert zstd.num_rows == 60175
        assert zstd.equals(lz4)
        with pytest.raises(pa.ArrowException) as unknown:
            fetch("brotli")
        assert "unknown compression \"brotli\"; use zstd, lz4 or none" in str(unknown.value)
        client.close()
        # ADBC (Go) decompresses on its own; the header goes with every call.
        option = f"adbc.flight.sql.rpc.call_header.{COMPRESSION_HEADER}"
        with flight_sql.connect(server.url, db_kwargs={option: "zstd"}, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(LINEITEM_SQL)
                assert cur.fetch_arrow_table().equals(zstd)
    finally:
        server.stop()
