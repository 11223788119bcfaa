"""Fixtures: the real `lakehouse` binary on a free local port, and ADBC connections to it.

The binary comes from LAKEHOUSE_BIN (scripts/test.sh builds it). Every server is stopped with
SIGTERM at the end, and the tests require a clean exit: graceful shutdown is part of the suite.
"""

import os
import socket
import subprocess
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

BIN = os.environ.get("LAKEHOUSE_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LakehouseServer:
    """A `lakehouse serve` process over `storage`."""

    def __init__(self, storage, *args, log_path, env=None):
        if not BIN or not os.path.exists(BIN):
            raise RuntimeError("set LAKEHOUSE_BIN to the lakehouse binary (scripts/test.sh does)")
        self.port = free_port()
        self.url = f"grpc://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--storage", str(storage), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{open(log_path).read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError(f"server did not start in time:\n{open(log_path).read()}")

    def connect(self):
        return flight_sql.connect(self.url, autocommit=True)

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.log.close()
        assert code == 0, f"server exit code {code} after SIGTERM:\n{open(self.log_path).read()}"


@pytest.fixture(scope="session")
def tpch_server(tmp_path_factory):
    """One server for the session, with the TPC-H sample at scale 0.01."""
    base = tmp_path_factory.mktemp("tpch")
    server = LakehouseServer(base / "data", "--sample", "tpch:0.01", log_path=base / "server.log")
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path):
    """A server over fresh, empty storage, for tests that write."""
    server = LakehouseServer(tmp_path / "data", log_path=tmp_path / "server.log")
    yield server
    server.stop()


@pytest.fixture
def conn(tpch_server):
    with tpch_server.connect() as conn:
        yield conn
