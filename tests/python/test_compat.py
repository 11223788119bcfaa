"""The client-compatibility suite: every client on the list of issue 3, against one real server
per security mode — plain, TLS, Basic auth, and auth over TLS (self-signed certificate made
here; users written by `lakehouse user add`).

Clients: ADBC Flight SQL (DB-API and its metadata calls), raw pyarrow.flight, and
flightsql-dbapi (the Superset/SQLAlchemy dialect, in its own venv as it pins SQLAlchemy < 2).
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import LakehouseServer, add_user, self_signed
from test_queries import _command_statement_query

ROOT = Path(__file__).resolve().parents[2]
MODES = ["plain", "tls", "auth", "auth+tls"]
WRITER = ("writer", "w-secret-1")
READER = ("reader", "r-secret-2")


@pytest.fixture(scope="module", params=MODES)
def compat(request, tmp_path_factory):
    mode = request.param
    base = tmp_path_factory.mktemp(mode.replace("+", "_"))
    args = ["--sample", "tpch:0.01"]
    tls_pem = login = None
    if "tls" in mode:
        tls_pem = self_signed(base)
        args += ["--tls-cert", str(base / "server.crt"), "--tls-key", str(base / "server.key")]
    if "auth" in mode:
        config = base / "lakehouse.toml"
        add_user(config, *WRITER, "write")
        add_user(config, *READER, "read")
        args += ["--auth", "basic", "--config", str(config)]
        login = WRITER
    server = LakehouseServer(base / "data", *args, log_path=base / "server.log",
                             tls_pem=tls_pem, login=login)
    server.mode = mode
    yield server
    server.stop()


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_adbc_query_with_bound_parameters(compat):
    with compat.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT n_name FROM nation WHERE n_nationkey = ? OR n_name = ? ORDER BY 1",
                    parameters=(3, "PERU"))
        assert cur.fetch_arrow_table().column("n_name").to_pylist() == ["CANADA", "PERU"]
        cur.execute("SELECT count(*) AS n FROM lineitem")
        assert cur.fetch_arrow_table().column("n").to_pylist() == [60_175]


def test_adbc_insert_with_bound_parameters(compat):
    table = unique("items")
    with compat.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id BIGINT NOT NULL, label VARCHAR)")
        cur.execute(f"INSERT INTO {table} VALUES (?, ?)", parameters=(1, "one"))
        assert cur.fetch_arrow_table().column("count").to_pylist() == [1]
        # executemany: one DoPut with all parameter rows, one commit.
        cur.executemany(f"INSERT INTO {table} VALUES (?, ?)",
                        [(2, "two"), (3, None), (4, "four")])
        assert cur.rowcount == 3
        cur.execute(f"SELECT id, label FROM {table} ORDER BY id")
        assert cur.fetch_arrow_table().to_pydict() == {
            "id": [1, 2, 3, 4], "label": ["one", "two", None, "four"]}
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute(f"INSERT INTO {table} VALUES (?, ?)", parameters=("x", "bad"))
        assert "parameter $1" in str(e.value)


def test_adbc_ingest_and_metadata(compat):
    table = unique("ingested")
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]})
    with compat.connect() as conn, conn.cursor() as cur:
        assert cur.adbc_ingest(table, data, mode="create") == 3
        assert conn.adbc_get_table_types() == ["TABLE"]
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Lakehouse"
        objects = conn.adbc_get_objects(depth="all", table_name_filter=table).read_all().to_pylist()
        tables = objects[0]["catalog_db_schemas"][0]["db_schema_tables"]
        assert [t["table_name"] for t in tables] == [table]
        assert [c["column_name"] for c in tables[0]["table_columns"]] == ["id", "name"]
        assert conn.adbc_get_table_schema(table).names == ["id", "name"]


def test_adbc_errors_carry_their_status(compat):
    with compat.connect() as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.execute("SELECT * FROM no_such_table")
        assert "NOT_FOUND" in str(e.value) or "NotFound" in str(e.value)
        with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
            cur.execute("SELEC 1")
        assert "INVALID_ARGUMENT" in str(e.value) or "InvalidArgument" in str(e.value)


def flight_client(server):
    kwargs = {"tls_root_certs": server.tls_pem} if server.tls_pem else {}
    return flight.FlightClient(server.url, **kwargs)


def test_pyarrow_flight_statement_and_get_schema(compat):
    client = flight_client(compat)
    options = flight.FlightCallOptions()
    if compat.login:
        header = client.authenticate_basic_token(*compat.login)
        assert header[0] == b"authorization" and header[1].startswith(b"Bearer ")
        options = flight.FlightCallOptions(headers=[header])
    descriptor = flight.FlightDescriptor.for_command(
        _command_statement_query("SELECT r_name FROM region ORDER BY r_regionkey"))
    info = client.get_flight_info(descriptor, options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.column("r_name").to_pylist()[0] == "AFRICA"
    assert client.get_schema(descriptor, options).schema == info.schema
    client.close()


def test_auth_refusals(compat):
    if "auth" not in compat.mode:
        pytest.skip("auth is off in this mode")
    # No credentials, a wrong password: UNAUTHENTICATED from ADBC and pyarrow.
    for login in [("writer", "wrong"), ("nobody", "x")]:
        with pytest.raises(adbc_driver_manager.Error) as e:
            with compat.connect(login=login) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert "UNAUTHENTICATED" in str(e.value) or "Unauthenticated" in str(e.value)
    client = flight_client(compat)
    descriptor = flight.FlightDescriptor.for_command(_command_statement_query("SELECT 1"))
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(descriptor)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions())
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token("writer", "wrong")
    client.close()
    # A read user queries but cannot write.
    with compat.connect(login=READER) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM region")
        assert cur.fetch_arrow_table().column("n").to_pylist() == [5]
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute(f"CREATE TABLE {unique('nope')} AS SELECT 1 AS x")
        assert "PERMISSION_DENIED" in str(e.value) or "PermissionDenied" in str(e.value)
        assert "role read" in str(e.value)
        with pytest.raises(adbc_driver_manager.Error) as e:
            cur.adbc_ingest(unique("nope"), pa.table({"x": [1]}), mode="create")
        assert "role read" in str(e.value)


def flightsql_dbapi_python():
    venv = subprocess.run(
        [str(ROOT / "scripts/python-env.sh"),
         str(ROOT / "tests/python/flightsql_dbapi/requirements.txt"),
         os.path.expanduser("~/.cache/lakehouse/venv-flightsql-dbapi")],
        capture_output=True, text=True, timeout=600, check=True).stdout.strip()
    return os.path.join(venv, "bin", "python")


def test_flightsql_dbapi_connect_query_reflect(compat, tmp_path):
    args = [flightsql_dbapi_python(), str(ROOT / "tests/python/flightsql_dbapi/check.py"),
            "--port", str(compat.port)]
    if compat.tls_pem:
        (tmp_path / "ca.pem").write_bytes(compat.tls_pem)
        args += ["--tls-ca", str(tmp_path / "ca.pem")]
    if compat.login:
        args += ["--user", compat.login[0], "--password", compat.login[1]]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dbapi_rows"] == [["ALGERIA", 0], ["ARGENTINA", 1]]
    assert {"nation", "region", "lineitem"} <= set(report["tables"])
    assert "public" in report["schemas"]
    assert report["columns"]["region"] == ["r_regionkey", "r_name", "r_comment"]
    assert report["sqlalchemy_rows"] == [[5]]


def test_lakehouse_ingest_cli(compat, tmp_path):
    from conftest import BIN

    table = unique("cli")
    csv = tmp_path / "cities.csv"
    csv.write_text("id,city\n1,Lisbon\n2,Porto\n")
    args = [BIN, "ingest", "--server", compat.url, "--table", table, str(csv)]
    env = dict(os.environ)
    if compat.tls_pem:
        (tmp_path / "ca.pem").write_bytes(compat.tls_pem)
        args += ["--tls-ca", str(tmp_path / "ca.pem")]
    if compat.login:
        args += ["--user", compat.login[0]]
        env["LAKEHOUSE_PASSWORD"] = compat.login[1]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    with compat.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT city FROM {table} ORDER BY id")
        assert cur.fetch_arrow_table().column("city").to_pylist() == ["Lisbon", "Porto"]
    if compat.login:
        env["LAKEHOUSE_PASSWORD"] = "wrong"
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 1 and "login failed" in result.stderr, result.stderr
