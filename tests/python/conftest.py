"""Fixtures: the real `lakehouse` binary on a free local port, and ADBC connections to it.

The binary comes from LAKEHOUSE_BIN (scripts/test.sh builds it). Every server is stopped with
SIGTERM at the end, and the tests require a clean exit: graceful shutdown is part of the suite.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

BIN = os.environ.get("LAKEHOUSE_BIN")
MODEL_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "model-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LakehouseServer:
    """A `lakehouse serve` process over `storage`.

    `tls_pem`: the server speaks TLS with that (self-signed) certificate, given in `args`;
    clients trust it. `login`: (user, password) clients log in with (the server runs with
    `--auth basic`, given in `args`). `prefix`: a command the server runs under (e.g. strace);
    the server itself is then its child, and stop() signals the server. `command`: `serve`,
    or `worker` for a distributed-execution worker. `port`: listen there (a restart on the
    same address) instead of on a free port.
    """

    def __init__(self, storage, *args, log_path, env=None, tls_pem=None, login=None,
                 prefix=(), command="serve", port=None):
        if not BIN or not os.path.exists(BIN):
            raise RuntimeError("set LAKEHOUSE_BIN to the lakehouse binary (scripts/test.sh does)")
        self.port = port or free_port()
        self.tls_pem = tls_pem
        self.login = login
        scheme = "grpc+tls://localhost" if tls_pem else "grpc://127.0.0.1"
        self.url = f"{scheme}:{self.port}"
        self.log_path = log_path
        self.storage = storage
        self.prefixed = bool(prefix)
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [*prefix, BIN, command, "--listen", f"127.0.0.1:{self.port}", "--storage", str(storage), *args],
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

    def db_kwargs(self, login=None, **extra):
        """ADBC database options: the TLS root certificate and the login, when the server has
        them (`login` overrides the server's)."""
        options = dict(extra)
        if self.tls_pem:
            options["adbc.flight.sql.client_option.tls_root_certs"] = self.tls_pem.decode()
        user_password = login or self.login
        if user_password:
            options["username"], options["password"] = user_password
        return options

    def connect(self, login=None, **extra):
        return flight_sql.connect(self.url, db_kwargs=self.db_kwargs(login, **extra),
                                  autocommit=True)

    def stop(self):
        if self.prefixed:
            # The server is the prefix command's child; the prefix exits with its status.
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            os.kill(int(children.split()[0]), signal.SIGTERM)
        else:
            self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.log.close()
        assert code == 0, f"server exit code {code} after SIGTERM:\n{open(self.log_path).read()}"


class ModelServer:
    """The real test model server (scripts/model-server: MiniLM over llama.cpp, Ollama and
    OpenAI APIs) on a free port; `url` is its base URL, `models` the models directory."""

    def __init__(self):
        self.models = os.environ.get("LAKEHOUSE_MODELS_DIR") or subprocess.run(
            [str(MODEL_SCRIPTS / "setup.sh")], capture_output=True, text=True, check=True,
            timeout=900).stdout.strip()
        self.proc = subprocess.Popen(
            ["node", str(MODEL_SCRIPTS / "server.mjs"), "--port", "0", "--exit-with-parent",
             "--embed", f"all-minilm={self.models}/minilm.gguf",
             "--chat", f"smollm2={self.models}/smollm2-135m.gguf"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"model server did not start: {line!r}")
        self.url = line.removeprefix("listening on ").strip()

    def embedding_toml(self, name="minilm", timeout_ms=30000, base_url=None):
        """The `[embedding]` config section for MiniLM (384-d) served by this server."""
        return (f'[embedding]\ndefault_model = "{name}"\n'
                f'[embedding.models.{name}]\nprovider = "ollama"\n'
                f'base_url = "{base_url or self.url}"\nmodel = "all-minilm"\n'
                f'dimension = 384\ntimeout_ms = {timeout_ms}\n')

    def chat_toml(self, ai_max_rows=100, timeout_ms=60000, base_url=None):
        """The `[chat]` config section for SmolLM2-135M served by this server (temperature 0)."""
        return (f'[chat]\nai_max_rows = {ai_max_rows}\n[chat.models.smollm2]\n'
                f'provider = "ollama"\nbase_url = "{base_url or self.url}"\n'
                f'model = "smollm2"\nmax_tokens = 48\ntimeout_ms = {timeout_ms}\n')

    def stats(self):
        """Requests answered since the server started (`GET /admin/stats`): `embed_requests`,
        `embed_inputs`, `chat_requests`."""
        with urllib.request.urlopen(f"{self.url}/admin/stats", timeout=10) as answer:
            return json.load(answer)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def configured_server(tmp_path, config_toml):
    """A server over `tmp_path/data` with `config_toml` as its config file (`storage` set)."""
    config = tmp_path / "lakehouse.toml"
    config.write_text(config_toml)
    server = LakehouseServer(tmp_path / "data", "--config", str(config),
                             log_path=tmp_path / "server.log")
    server.storage = tmp_path / "data"
    return server


def start_moto(log, env=None):
    """A moto S3 server (from PyPI) on a free local port, logging to the open file `log`:
    (process, the AWS_* variables that point the server and boto3 at it)."""
    import sys
    port = free_port()
    moto = subprocess.Popen(
        [Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return moto, {
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


@pytest.fixture(scope="session")
def model_server():
    server = ModelServer()
    yield server
    server.stop()


def self_signed(dir):
    """`lakehouse cert --out-dir DIR`: a self-signed certificate (rcgen) for localhost and
    127.0.0.1 (server.crt, server.key in `dir`); returns the certificate PEM."""
    result = subprocess.run([BIN, "cert", "--out-dir", str(dir)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "serve with: lakehouse serve --tls-cert" in result.stdout
    return (dir / "server.crt").read_bytes()


def add_user(config, name, password, role):
    """`lakehouse user add NAME --role ROLE --config FILE`, the password on standard input."""
    result = subprocess.run([BIN, "user", "add", name, "--role", role, "--config", str(config)],
                            input=password + "\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


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


def proto_message(package, name, **fields):
    """One protobuf message of `package.name` whose fields are `fields` (name=(number, kind,
    value), kind "string" or "bytes"), encoded by the protobuf library from a descriptor built
    here (a subset of the real .proto: the same field numbers and wire types)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    types = {"string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
             "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES}
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.{name}.subset.proto",
                                              package=package, syntax="proto3")
    msg = file.message_type.add(name=name)
    for field, (number, kind, _) in fields.items():
        msg.field.add(name=field, number=number, type=types[kind],
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
    return cls(**{field: value for field, (_, _, value) in fields.items()})
