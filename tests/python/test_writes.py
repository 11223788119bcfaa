"""SQL writes from ADBC's DB-API: `cursor.execute` sends every statement as a Flight SQL query;
data-changing ones run once and answer their row count."""

import adbc_driver_manager
import pytest


def test_adbc_sql_writes(server):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA sales")
        cur.execute("CREATE TABLE sales.orders (id BIGINT NOT NULL, amount DOUBLE)")
        cur.execute("INSERT INTO sales.orders VALUES (1, 9.5), (2, 20.0), (3, 1.25)")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [3]
        cur.execute("CREATE TABLE sales.big AS SELECT id, amount * 2 AS double_amount FROM sales.orders")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [3]
        cur.execute("SELECT sum(double_amount) AS s FROM sales.big")
        assert cur.fetch_arrow_table().column("s").to_pylist() == [61.5]
        assert "big" in [t["table_name"] for t in conn.adbc_get_objects(depth="tables", db_schema_filter="sales")
                         .read_all().to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]]
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("INSERT INTO sales.orders VALUES (NULL, 1.0)")
        assert "non-nullable" in str(e.value)
        cur.execute("DROP SCHEMA sales CASCADE")
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM sales.orders")
        assert "not found" in str(e.value)


def test_default_schema_from_the_connection(server):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA staging")
        cur.execute("CREATE TABLE staging.events AS SELECT 7 AS n")
    import adbc_driver_flightsql.dbapi as flight_sql
    option = "adbc.flight.sql.rpc.call_header.x-lakehouse-schema"
    with flight_sql.connect(server.url, db_kwargs={option: "staging"}, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT n FROM events")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [7]
