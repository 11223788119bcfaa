"""TLS from ADBC and pyarrow.flight, with a self-signed certificate generated here."""

import datetime
import ipaddress

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import LakehouseServer
from test_queries import _command_statement_query


def self_signed(dir):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (dir / "server.crt").write_bytes(pem)
    (dir / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return pem


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
