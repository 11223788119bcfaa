"""Operations: Prometheus metrics at /metrics, /healthz and /readyz (also during shutdown), the
gRPC health service without credentials, and the audit log (file, rotation, object-store
segments, `audit_log()` for write users only). docs/operations.md describes what is tested."""

import json
import threading
import time
import urllib.error
import urllib.request

import adbc_driver_manager
import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from conftest import LakehouseServer, add_user, free_port, start_moto
from test_queries import _command_statement_query


def scrape(port):
    """/metrics parsed by prometheus_client's text parser: {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name, **labels):
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def http_status(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics_server(tmp_path, config="", *args):
    port = free_port()
    path = tmp_path / "lakehouse.toml"
    path.write_text(config)
    server = LakehouseServer(tmp_path / "data", "--config", str(path), "--metrics-listen",
                             str(port), *args, log_path=tmp_path / "server.log")
    server.metrics_port = port
    return server


def test_metrics_move_with_queries_errors_ingests_commits_and_model_calls(tmp_path, model_server):
    server = metrics_server(tmp_path, model_server.embedding_toml())
    try:
        before = scrape(server.metrics_port)
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
            cur.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
            cur.execute("SELECT * FROM t ORDER BY id")
            assert cur.fetch_arrow_table().num_rows == 3
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute("SELECT * FROM no_such_table")
            cur.adbc_ingest("bulk", pa.table({"x": list(range(1000))}), mode="create")
            cur.execute("SELECT embed('hello metrics')")
            assert len(cur.fetch_arrow_table().column(0)[0]) == 384
        after = scrape(server.metrics_port)
    finally:
        server.stop()

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("lakehouse_rpcs_total", rpc="DoGet", code="Ok") >= 2
    # ADBC prepares every statement: the missing table fails CreatePreparedStatement.
    assert moved("lakehouse_rpcs_total", rpc="DoAction", command="CreatePreparedStatement",
                 code="NotFound") == 1
    assert moved("lakehouse_rpc_duration_seconds_count", rpc="GetFlightInfo") >= 3
    assert moved("lakehouse_query_planning_seconds_count") >= 2
    assert moved("lakehouse_query_execution_seconds_count") >= 2
    assert moved("lakehouse_query_first_batch_seconds_count") >= 2
    assert moved("lakehouse_query_queue_seconds_count") >= 2
    assert moved("lakehouse_result_rows_total") >= 4
    assert moved("lakehouse_result_bytes_total") > 0
    assert moved("lakehouse_ingest_rows_total", table="public.bulk") == 1000
    assert moved("lakehouse_ingest_bytes_total", table="public.bulk") > 8000
    assert moved("lakehouse_commits_total", table="public.t") == 2
    assert moved("lakehouse_commits_total", table="public.bulk") == 1
    assert moved("lakehouse_model_calls_total", kind="embedding", model="minilm",
                 outcome="ok") == 1
    assert moved("lakehouse_model_call_duration_seconds_count", kind="embedding") == 1
    # Histogram buckets are cumulative and end with +Inf = count.
    count = total(after, "lakehouse_rpc_duration_seconds_count", rpc="DoGet")
    assert total(after, "lakehouse_rpc_duration_seconds_bucket", rpc="DoGet", le="+Inf") == count
    assert ("lakehouse_queries_running", ()) in after
    assert ("lakehouse_memory_pool_reserved_bytes", ()) in after


def test_health_without_credentials_and_readiness_during_shutdown(tmp_path):
    config = tmp_path / "auth.toml"
    config.write_text('[auth]\nmode = "basic"\n')
    add_user(config, "alice", "secret-pw", "write")
    server = metrics_server(tmp_path, config.read_text(), "--shutdown-timeout-secs", "60")
    server.login = ("alice", "secret-pw")
    port = server.metrics_port
    assert http_status(port, "/healthz") == (200, "ok\n")
    assert http_status(port, "/readyz") == (200, "ready\n")
    assert http_status(port, "/nope")[0] == 404
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "arrow.flight.protocol.FlightService"]:
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    # The Flight service itself still wants credentials.
    client = flight.FlightClient(server.url)
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(flight.FlightDescriptor.for_command(
            _command_statement_query("SELECT 1")))

    # A long result, read slowly, keeps the server in its shutdown grace period.
    token = client.authenticate_basic_token("alice", "secret-pw")
    options = flight.FlightCallOptions(headers=[token])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        _command_statement_query("SELECT * FROM range(20000000)")), options)
    reader = client.do_get(info.endpoints[0].ticket, options)
    reader.read_chunk()
    server.proc.terminate()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = http_status(port, "/readyz")
        if status[0] == 503:
            break
        time.sleep(0.1)
    assert status == (503, "not ready: starting or shutting down\n")
    assert http_status(port, "/healthz") == (200, "ok\n")
    assert server.proc.poll() is None, "the in-flight stream keeps the server up"
    reader.cancel()
    client.close()
    assert server.proc.wait(timeout=60) == 0
    server.log.close()


def audit_server(tmp_path, audit_toml):
    config = tmp_path / "lakehouse.toml"
    config.write_text('[auth]\nmode = "basic"\n' + audit_toml)
    add_user(config, "alice", "alice-pw", "write")
    add_user(config, "bob", "bob-pw", "read")
    return LakehouseServer(tmp_path / "data", "--config", str(config),
                           log_path=tmp_path / "server.log", login=("alice", "alice-pw"))


def test_audit_log_records_queries_refused_logins_writes_and_ingests(tmp_path):
    log = tmp_path / "audit.jsonl"
    server = audit_server(tmp_path, f'[audit]\npath = "{log}"\n')
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id BIGINT)")
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("SELECT id FROM t WHERE id > 0")
            assert cur.fetch_arrow_table().num_rows == 2
            cur.adbc_ingest("t", pa.table({"id": pa.array([3, 4, 5], pa.int64())}),
                            mode="append")
        with pytest.raises(adbc_driver_manager.Error):
            with server.connect(login=("mallory", "guess")) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        with server.connect(login=("bob", "bob-pw")) as conn, conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error, match="write"):
                cur.execute("SELECT * FROM audit_log()")
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT rpc, principal, statement, outcome FROM audit_log() "
                        "WHERE principal = 'bob' AND outcome = 'PermissionDenied'")
            denied = cur.fetch_arrow_table().to_pylist()
            assert denied and "audit_log()" in denied[0]["statement"]
            cur.execute("SELECT count(*) AS n FROM audit_log()")
            assert cur.fetch_arrow_table().column(0)[0].as_py() > 5
    finally:
        server.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    keys = {"time", "principal", "peer", "rpc", "command", "query_id", "statement", "parameters",
            "tables_read", "tables_written", "rows", "bytes", "outcome", "error", "duration_ms"}
    assert all(set(r) == keys for r in records)
    assert all(r["peer"].startswith("127.0.0.1:") for r in records)

    def one(**want):
        found = [r for r in records if all(r[k] == v for k, v in want.items())]
        assert found, f"no record with {want} in {records}"
        return found[-1]

    query = one(rpc="DoGet", statement="SELECT id FROM t WHERE id > 0", outcome="Ok")
    assert query["principal"] == "alice"
    assert query["rows"] == 2 and query["bytes"] > 0
    assert query["tables_read"] == ["public.t@2"]
    assert query["query_id"]
    # ADBC sends every statement as a CommandStatementQuery: writes run in GetFlightInfo.
    created = one(rpc="GetFlightInfo", statement="CREATE TABLE t (id BIGINT)")
    assert created["tables_written"] == ["public.t@1"] and created["outcome"] == "Ok"
    insert = one(rpc="GetFlightInfo", statement="INSERT INTO t VALUES (1), (2)")
    assert insert["tables_written"] == ["public.t@2"] and insert["rows"] == 2
    ingest = one(rpc="DoPut", command="CommandStatementIngest", statement="t")
    assert ingest["tables_written"] == ["public.t@3"]
    assert ingest["rows"] == 3 and ingest["bytes"] > 0
    refused = one(principal="mallory")
    assert refused["outcome"] == "Unauthenticated" and refused["error"]
    assert all(r["duration_ms"] >= 0 for r in records)


@pytest.mark.parametrize("log_parameters", [False, True])
def test_audit_log_elides_parameters_unless_asked(tmp_path, log_parameters):
    log = tmp_path / "audit.jsonl"
    flag = "true" if log_parameters else "false"
    server = audit_server(tmp_path, f'[audit]\npath = "{log}"\nlog_parameters = {flag}\n')
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT CAST(? AS BIGINT) + 1 AS n, CAST(? AS VARCHAR) AS s",
                        parameters=(41, "secret-value"))
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 42, "s": "secret-value"}]
    finally:
        server.stop()
    text = log.read_text()
    gets = [json.loads(line) for line in text.splitlines()
            if json.loads(line)["statement"] == "SELECT CAST(? AS BIGINT) + 1 AS n, "
                                                  "CAST(? AS VARCHAR) AS s"
            and json.loads(line)["rpc"] == "DoGet"]
    assert len(gets) == 1
    if log_parameters:
        assert gets[0]["parameters"] == ["41", "secret-value"]
    else:
        assert gets[0]["parameters"] is None
        assert "secret-value" not in text


def test_audit_log_rotates_and_reads_back_every_file(tmp_path):
    log = tmp_path / "audit.jsonl"
    server = audit_server(tmp_path, f'[audit]\npath = "{log}"\nmax_file_bytes = 2000\n'
                                    'keep_files = 50\n')
    try:
        with server.connect() as conn, conn.cursor() as cur:
            for i in range(20):
                cur.execute(f"SELECT {i} AS n")
                cur.fetch_arrow_table()
            cur.execute("SELECT statement FROM audit_log() WHERE rpc = 'DoGet'")
            statements = cur.fetch_arrow_table().column(0).to_pylist()
    finally:
        server.stop()
    assert [f"SELECT {i} AS n" for i in range(20)] == [s for s in statements
                                                        if s and s.endswith(" AS n")]
    rotated = sorted(p.name for p in tmp_path.glob("audit.jsonl.*"))
    assert len(rotated) >= 2, rotated


def test_audit_log_to_an_object_store_prefix(tmp_path):
    prefix = tmp_path / "audit-segments"
    prefix.mkdir()
    server = audit_server(tmp_path, f'[audit]\npath = "file://{prefix}"\n')
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT 42 AS answer")
            cur.fetch_arrow_table()
            cur.execute("SELECT statement, tables_read FROM audit_log() "
                        "WHERE statement = 'SELECT 42 AS answer' AND rpc = 'DoGet'")
            assert cur.fetch_arrow_table().num_rows == 1
    finally:
        server.stop()
    segments = list(prefix.glob("audit-*.jsonl"))
    assert segments
    lines = [json.loads(line) for s in segments for line in s.read_text().splitlines()]
    assert any(r["statement"] == "SELECT 42 AS answer" for r in lines)


def test_audit_log_refuses_a_bad_path_at_start(tmp_path):
    config = tmp_path / "lakehouse.toml"
    config.write_text(f'[audit]\npath = "{tmp_path}/missing-dir/audit.jsonl"\n')
    with pytest.raises(RuntimeError, match="audit.path .*missing-dir.*cannot open"):
        LakehouseServer(tmp_path / "data", "--config", str(config),
                        log_path=tmp_path / "server.log")


def doctor(*args, env=None):
    """`lakehouse doctor ARGS --json`: (exit code, checks by name, text output of a second run
    without --json)."""
    import os
    import subprocess

    from conftest import BIN
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([BIN, "doctor", *args, "--json"], capture_output=True, text=True,
                            timeout=300, env=full_env)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    text = subprocess.run([BIN, "doctor", *args], capture_output=True, text=True, timeout=300,
                          env=full_env)
    assert text.returncode == result.returncode
    return result.returncode, checks, text.stdout


def test_doctor_passes_a_good_config(tmp_path, model_server):
    config = tmp_path / "lakehouse.toml"
    port = free_port()
    config.write_text(f'storage = "{tmp_path}/data"\nlisten = "127.0.0.1:{port}"\n'
                      + model_server.embedding_toml() + model_server.chat_toml())
    code, checks, text = doctor("--config", str(config))
    assert code == 0, text
    assert all(c["ok"] and c["fix"] is None for c in checks.values())
    for name in ["config", "storage reachable", "storage writable with conditional create",
                 "catalog loads", "embedding model minilm", "chat model smollm2",
                 f"listen 127.0.0.1:{port} free"]:
        assert name in checks, checks
    assert "384 dimensions" in checks["embedding model minilm"]["detail"]
    assert text.splitlines()[-1] == f"all {len(checks)} checks passed"
    assert not list((tmp_path / "data").rglob("_lakehouse_doctor/*")), "the probe is removed"


def test_doctor_names_a_key_that_does_not_match_and_a_worker_that_is_down(tmp_path):
    import subprocess

    from conftest import BIN
    for name in ["a", "b"]:
        (tmp_path / name).mkdir()
        subprocess.run([BIN, "cert", "--out-dir", str(tmp_path / name)], check=True,
                       capture_output=True, timeout=60)
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        f'storage = "{tmp_path}/data"\nlisten = "127.0.0.1:{free_port()}"\n'
        f'tls_cert = "{tmp_path}/a/server.crt"\ntls_key = "{tmp_path}/b/server.key"\n'
        f'[distributed]\nsecret = "s3cret"\nworkers = ["grpc://127.0.0.1:{free_port()}"]\n'
        'worker_timeout_secs = 2\n')
    code, checks, text = doctor("--config", str(config))
    assert code == 1, text
    assert checks["tls files readable"]["ok"]
    mismatch = checks["tls key matches certificate"]
    assert not mismatch["ok"] and "the key the certificate was issued for" in mismatch["fix"]
    worker = next(c for name, c in checks.items() if name.startswith("worker grpc://"))
    assert not worker["ok"] and "lakehouse worker" in worker["fix"]
    # The same files, matched, pass.
    config.write_text(config.read_text().replace(f"{tmp_path}/b/server.key",
                                                 f"{tmp_path}/a/server.key"))
    code, checks, _ = doctor("--config", str(config))
    assert checks["tls key matches certificate"]["ok"]


def test_doctor_names_a_stopped_model_server_a_wrong_dimension_and_a_busy_port(tmp_path,
                                                                              model_server):
    stopped = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "lakehouse.toml"
    busy = LakehouseServer(tmp_path / "busy", log_path=tmp_path / "busy.log")
    try:
        config.write_text(
            f'storage = "{tmp_path}/data"\nlisten = "127.0.0.1:{busy.port}"\n'
            '[embedding]\ndefault_model = "wrong"\n'
            f'[embedding.models.wrong]\nprovider = "ollama"\nbase_url = "{model_server.url}"\n'
            'model = "all-minilm"\ndimension = 128\ntimeout_ms = 30000\n'
            f'[embedding.models.down]\nprovider = "ollama"\nbase_url = "{stopped}"\n'
            'model = "all-minilm"\ndimension = 384\ntimeout_ms = 2000\n')
        code, checks, text = doctor("--config", str(config))
    finally:
        busy.stop()
    assert code == 1
    wrong = checks["embedding model wrong"]
    assert not wrong["ok"] and "384" in wrong["detail"]
    assert "set dimension = 384" in wrong["fix"]
    down = checks["embedding model down"]
    assert not down["ok"] and "unavailable" in down["detail"]
    assert stopped in down["fix"]
    port = checks[f"listen 127.0.0.1:{busy.port} free"]
    assert not port["ok"] and "another lakehouse" in port["fix"]
    assert checks["storage reachable"]["ok"]
    assert "fix: set dimension = 384" in text
    assert text.splitlines()[-1] == "3 of %d checks failed" % len(checks)


@pytest.fixture
def moto_env(tmp_path):
    log = open(tmp_path / "moto.log", "w")
    moto, env = start_moto(log)
    yield env
    moto.terminate()
    moto.wait(timeout=30)
    log.close()


def test_doctor_on_s3_names_a_missing_bucket_and_passes_an_existing_one(tmp_path, moto_env):
    import boto3
    code, checks, text = doctor("--storage", "s3://no-such-bucket/lake", "--listen",
                                f"127.0.0.1:{free_port()}", env=moto_env)
    assert code == 1
    reachable = checks["storage reachable"]
    assert not reachable["ok"] and "no-such-bucket" in reachable["detail"]
    assert "create the bucket" in reachable["fix"]
    boto3.client("s3", endpoint_url=moto_env["AWS_ENDPOINT"], aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1").create_bucket(
        Bucket="there")
    code, checks, text = doctor("--storage", "s3://there/lake", "--listen",
                                f"127.0.0.1:{free_port()}", env=moto_env)
    assert code == 0, text
    assert checks["storage writable with conditional create"]["ok"]
