"""TLS from ADBC and pyarrow.flight, with a self-signed certificate generated here."""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import pytest

from conftest import LakehouseServer, self_signed
from test_queries import _command_statement_query


@pytest.fixture
def tls_server(tmp_path):
    pem = self_signed(tmp_path)
    server = LakehouseServer(tmp_path / "data", "--tls-cert", tmp_path / "server.crt",
                             "--tls-key", tmp_path / "server.key", log_path=tmp_path / "s.log")
    yield server, pem
    server.stop()


def test_adbc_and_pyarrow_over_tls(tls_server):
    server, pem = tls_server
    url = f"grpc+tls://localhost:{server.port}"
    options = {"adbc.flight.sql.client_option.tls_root_certs": pem.decode()}
    with flight_sql.connect(url, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 40 + 2 AS answer")
        assert cur.fetch_arrow_table().column("answer").to_pylist() == [42]
        assert conn.adbc_get_info()["vendor_name"] == "Lakehouse"

    client = flight.FlightClient(url, tls_root_certs=pem)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        _command_statement_query("SELECT 'tls' AS s")))
    assert client.do_get(info.endpoints[0].ticket).read_all().column("s").to_pylist() == ["tls"]
    client.close()

    # A client that does not trust the certificate cannot talk to the server.
    with pytest.raises(Exception):
        with flight_sql.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
