"""Traces: spans exported over OTLP/gRPC to a real receiver (grpcio serving the collector's
TraceService from the `opentelemetry-proto` package), checked as a tree: the client's
`traceparent` → the RPC spans → plan / admission / execute / commit, and on a distributed query
the coordinator → the worker's `worker_task`."""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from pyarrow import flight

from conftest import LakehouseServer, free_port
from test_distributed import SECRET_ENV
from test_operations import http_status, scrape, total
from test_queries import _command_statement_query


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver on a free local port: keeps (service name, span) pairs."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(a.value.string_value for a in resource_spans.resource.attributes
                               if a.key == "service.name")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append((service, span))
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id):
        with self.lock:
            return [(s, span) for s, span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.stop(grace=None)


def traceparent():
    """A fresh W3C trace context: (trace id bytes, parent span id bytes, header)."""
    trace_id, parent = secrets.token_bytes(16), secrets.token_bytes(8)
    return trace_id, parent, (b"traceparent", f"00-{trace_id.hex()}-{parent.hex()}-01".encode())


def attributes(span):
    return {a.key: a.value for a in span.attributes}


def query(url, sql, header):
    client = flight.FlightClient(url)
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        _command_statement_query(sql)), options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    client.close()
    return table


def test_one_query_is_one_span_tree_under_the_clients_trace(tmp_path, receiver):
    server = LakehouseServer(tmp_path / "data", "--otlp-endpoint", receiver.url,
                             log_path=tmp_path / "server.log")
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.adbc_ingest("t", pa.table({"x": list(range(1000))}), mode="create")
        trace_id, parent, header = traceparent()
        table = query(server.url, "SELECT sum(x) AS s FROM t WHERE x > 10", header)
        assert table.column(0)[0].as_py() == sum(range(11, 1000))
        write_trace, write_parent, write_header = traceparent()
        query(server.url, "INSERT INTO t VALUES (5000)", write_header)
    finally:
        server.stop()  # flushes the batched spans
    spans = [span for _, span in receiver.trace(trace_id)]
    by_id = {span.span_id: span for span in spans}

    def named(name, parent_id):
        found = [s for s in spans if s.name == name and s.parent_span_id == parent_id]
        assert found, f"no span {name} under {parent_id.hex()}: " + \
            str([(s.name, s.parent_span_id.hex()) for s in spans])
        return found[0]

    info = named("GetFlightInfo", parent)
    get = named("DoGet", parent)
    assert attributes(info)["lakehouse.command"].string_value == "CommandStatementQuery"
    assert attributes(get)["lakehouse.user"].string_value == "anonymous"
    assert attributes(get)["lakehouse.query_id"].string_value
    assert attributes(get)["rpc.grpc.status_code"].int_value == 0
    named("plan", info.span_id)
    named("admission", get.span_id)
    execute = named("execute", get.span_id)
    metrics = attributes(execute)["datafusion.metrics"].string_value
    assert "AggregateExec" in metrics and "output_rows=" in metrics, metrics
    assert all(s.parent_span_id == parent or s.parent_span_id in by_id for s in spans)
    assert get.start_time_unix_nano >= info.start_time_unix_nano
    assert execute.end_time_unix_nano <= get.end_time_unix_nano

    writes = [span for _, span in receiver.trace(write_trace)]
    write_rpc = next(s for s in writes if s.name == "GetFlightInfo"
                     and s.parent_span_id == write_parent)
    commits = [s for s in writes if s.name == "commit"]
    assert len(commits) == 1 and attributes(commits[0])["table"].string_value == "public.t"
    ids = {s.span_id: s for s in writes}
    ancestor = commits[0]
    while ancestor.parent_span_id in ids:
        ancestor = ids[ancestor.parent_span_id]
    assert ancestor.span_id == write_rpc.span_id
    # The commit's manifest write is an object-store request in the commit's span.
    puts = [s for s in writes if s.name == "object_store" and s.parent_span_id == commits[0].span_id]
    assert any(attributes(p)["op"].string_value == "put" and
               "_manifests/" in attributes(p)["path"].string_value for p in puts), \
        [(s.name, attributes(s)) for s in puts]


def test_a_distributed_query_is_one_trace_from_coordinator_to_worker(tmp_path, receiver):
    env = {**SECRET_ENV}
    storage = tmp_path / "lake"
    loader = LakehouseServer(storage, log_path=tmp_path / "loader.log")
    try:
        with loader.connect() as conn, conn.cursor() as cur:
            for part in range(4):
                cur.adbc_ingest("t", pa.table({"x": list(range(part * 5000, (part + 1) * 5000))}),
                                mode="create_append")
    finally:
        loader.stop()
    # Two workers: a stage of one task would run on the coordinator.
    metrics_ports = [free_port() for _ in range(2)]
    workers = [LakehouseServer(storage, "--otlp-endpoint", receiver.url,
                               "--metrics-listen", str(metrics_ports[i]), command="worker",
                               log_path=tmp_path / f"worker{i}.log",
                               env={**env, "OTEL_SERVICE_NAME": "lakehouse-worker"})
               for i in range(2)]
    config = tmp_path / "coordinator.toml"
    config.write_text("[distributed]\nbytes_per_task = 1024\n")
    coordinator = LakehouseServer(storage, "--workers", ",".join(w.url for w in workers),
                                  "--config", str(config), "--otlp-endpoint", receiver.url,
                                  log_path=tmp_path / "coordinator.log", env=env)
    try:
        trace_id, parent, header = traceparent()
        explained = query(coordinator.url, "EXPLAIN SELECT count(*), sum(x) FROM t", header)
        plan = "\n".join(explained.column(1).to_pylist())
        assert "NetworkCoalesceExec" in plan or "NetworkShuffleExec" in plan, plan
        trace_id, parent, header = traceparent()
        table = query(coordinator.url, "SELECT count(*) AS n, sum(x) AS s FROM t", header)
        assert table.to_pylist() == [{"n": 20000, "s": sum(range(20000))}]
        # The workers count their tasks at /metrics; none runs once the query is done.
        scraped = [scrape(port) for port in metrics_ports]
        assert sum(total(m, "lakehouse_worker_tasks_total") for m in scraped) >= 2
        assert all(total(m, "lakehouse_worker_tasks_running") == 0 for m in scraped)
        assert all(http_status(port, "/readyz")[0] == 200 for port in metrics_ports)
    finally:
        coordinator.stop()
        for worker in workers:
            worker.stop()
    spans = receiver.trace(trace_id)
    coordinator_spans = {span.span_id: span for service, span in spans if service == "lakehouse"}
    tasks = [span for service, span in spans
             if service == "lakehouse-worker" and span.name == "worker_task"]
    assert tasks, [(service, span.name) for service, span in spans]
    for task in tasks:
        assert task.parent_span_id in coordinator_spans, "the task's parent is on the coordinator"
    roots = [s for s in coordinator_spans.values() if s.parent_span_id == parent]
    assert {s.name for s in roots} == {"GetFlightInfo", "DoGet"}
