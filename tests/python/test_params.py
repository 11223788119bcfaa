"""Bound `?` parameters through ADBC's DB-API (CreatePreparedStatement, DoPut of the values,
GetFlightInfo with the handle the server returned, DoGet)."""

import datetime

import adbc_driver_manager
import pytest


def test_adbc_query_parameters(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n_name FROM nation WHERE n_nationkey = ? OR n_name = ? ORDER BY n_name",
            parameters=(3, "PERU"),
        )
        assert cur.fetch_arrow_table().column("n_name").to_pylist() == ["CANADA", "PERU"]

        cur.execute("SELECT count(*) AS n FROM orders WHERE o_orderdate < ? AND o_totalprice > ?",
                    parameters=(datetime.date(1995, 1, 1), 1000.5))
        n = cur.fetch_arrow_table().column("n")[0].as_py()
        cur.execute("SELECT count(*) AS n FROM orders WHERE o_orderdate < DATE '1995-01-01' "
                    "AND o_totalprice > 1000.5")
        assert n == cur.fetch_arrow_table().column("n")[0].as_py() > 0

        # The same statement with other values (ADBC re-binds the prepared statement).
        for key, name in [(0, "ALGERIA"), (24, "UNITED STATES")]:
            cur.execute("SELECT n_name FROM nation WHERE n_nationkey = ?", parameters=(key,))
            assert cur.fetch_arrow_table().column("n_name").to_pylist() == [name]


def test_adbc_parameter_errors(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM nation WHERE n_nationkey = ?", parameters=("three",))
        assert "parameter $1" in str(e.value)
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT * FROM nation WHERE n_nationkey = ?", parameters=(1, 2))
        assert "1 parameter(s), 2 value(s)" in str(e.value)
        cur.execute("SELECT 1 AS ok")
        assert cur.fetch_arrow_table().column("ok").to_pylist() == [1]
