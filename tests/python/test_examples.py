"""The Python examples in clients/python run as they are, against a plain server and against a
server with TLS and auth (settings passed through the environment, as connection.py reads
them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LakehouseServer, add_user, self_signed

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "python"


@pytest.fixture(scope="module", params=["plain", "auth+tls"])
def example_server(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    args, env = ["--sample", "tpch:0.01"], {}
    if request.param == "auth+tls":
        self_signed(base)
        add_user(base / "lakehouse.toml", "analyst", "an4lyst-pw", "write")
        args += ["--tls-cert", str(base / "server.crt"), "--tls-key", str(base / "server.key"),
                 "--auth", "basic", "--config", str(base / "lakehouse.toml")]
        env = {"LAKEHOUSE_TLS_CA": str(base / "server.crt"), "LAKEHOUSE_USER": "analyst",
               "LAKEHOUSE_PASSWORD": "an4lyst-pw"}
    server = LakehouseServer(base / "data", *args, log_path=base / "server.log")
    env["LAKEHOUSE_URL"] = (f"grpc+tls://localhost:{server.port}" if env else server.url)
    yield env
    server.stop()


def run(example, env):
    result = subprocess.run([sys.executable, str(EXAMPLES / example)], cwd=EXAMPLES,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_query_adbc(example_server):
    out = run("query_adbc.py", example_server)
    assert "l_returnflag" in out and "['ARGENTINA', 'BRAZIL', 'CANADA', 'PERU', 'UNITED STATES']" in out
    assert "o_orderkey: int64" in out


def test_ingest_adbc(example_server):
    out = run("ingest_adbc.py", example_server)
    assert "ingested 3 rows" in out and "inserted 2 rows" in out
    assert "['Lisbon', 'Porto', 'Braga', 'Coimbra', 'Faro']" in out


def test_query_pyarrow_flight(example_server):
    out = run("query_pyarrow_flight.py", example_server)
    assert "['AFRICA', 'AMERICA', 'ASIA', 'EUROPE', 'MIDDLE EAST']" in out
