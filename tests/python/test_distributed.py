"""Distributed execution (issue 14): a coordinator (`lakehouse serve --workers ...`) and three
`lakehouse worker` processes over one storage — a shared local directory, and (for the TPC-H
answers) one S3 bucket served by moto.

The 22 TPC-H queries at SF 0.1 give the same answers distributed as on a single node and as
DuckDB (compared as in test_tpch.py), also after DELETE and UPDATE, and EXPLAIN shows each of
them planned in datafusion-distributed's network stages. Then: the per-connection switch,
workers over another storage, `workers()`, faults (a worker killed or hung mid-query), each
worker's memory limit, cancel / timeout / result limit reaching the workers' tasks, and the
workers file. (The secret on every worker call and mutual TLS are tested in
tests/integration/distributed.rs.)
"""

import subprocess

import pyarrow as pa
import pytest
from pyarrow import flight

from conftest import BIN, LakehouseServer, free_port, proto_message
from test_queries import _command_statement_query
from test_s3 import BUCKET, s3  # noqa: F401 (the moto fixture)
from test_tpch import load_query, load_tpch, rows, rows_equal, sort_key

SECRET = "test-cluster-secret"
SECRET_ENV = {"LAKEHOUSE_DISTRIBUTED_SECRET": SECRET}


def start_cluster(base, storage, env=None):
    """A single node, three workers and a coordinator over `storage` (a directory or an S3 URL,
    reached with `env`), TPC-H loaded through the single node; answers (single, coordinator,
    workers, DuckDB, started servers)."""
    env = {**(env or {}), **SECRET_ENV}
    single = LakehouseServer(storage, log_path=base / "single.log", env=env)
    started = [single]
    try:
        duck = load_tpch(base, single)
        workers = []
        for i in range(3):
            workers.append(LakehouseServer(storage, log_path=base / f"worker{i}.log", env=env,
                                           command="worker"))
            started.append(workers[-1])
        # 1 MiB per scan task, so that SF 0.1's tables (lineitem: 18 MB) spread over all workers.
        config = base / "coordinator.toml"
        config.write_text("[distributed]\nbytes_per_task = 1048576\n")
        coordinator = LakehouseServer(
            storage, "--workers", ",".join(w.url for w in workers), "--config", str(config),
            log_path=base / "coordinator.log", env=env,
        )
        started.append(coordinator)
        return (single, coordinator, workers, duck), started
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster over a shared local directory."""
    base = tmp_path_factory.mktemp("distributed")
    cluster, started = start_cluster(base, base / "lakehouse")
    yield cluster
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory, s3):
    """The cluster over one S3 bucket (moto): every node reads it with the same AWS_* settings."""
    env, _ = s3
    cluster, started = start_cluster(tmp_path_factory.mktemp("distributed-s3"),
                                     f"s3://{BUCKET}/distributed", env)
    yield cluster
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module", params=["local", "s3"])
def tpch_cluster(request):
    """Each cluster in turn: over a shared directory and over an S3 bucket."""
    return request.getfixturevalue("cluster" if request.param == "local" else "s3_cluster")


def fetch(server, sql):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_explain_shows_network_stages(cluster):
    _, coordinator, _, _ = cluster
    plan = fetch(coordinator, "EXPLAIN " + load_query(3)[0])
    text = "\n".join(str(v) for v in plan.column("plan").to_pylist())
    assert "DistributedExec" in text, text
    assert "Network" in text, text
    # Three scan tasks: one per worker.
    assert "tasks=3" in text, text
    # A second row names the workers the tasks are routed to.
    rows_by_type = dict(zip(plan.column("plan_type").to_pylist(), plan.column("plan").to_pylist()))
    assert all(w.url in rows_by_type["workers"] for w in cluster[2]), rows_by_type["workers"]
    # EXPLAIN ANALYZE runs the query over the workers and shows each stage's metrics.
    analyzed = "\n".join(fetch(coordinator, "EXPLAIN ANALYZE " + load_query(3)[0])
                         .column("plan").to_pylist())
    assert "DistributedExec" in analyzed and "bytes_transferred=" in analyzed, analyzed
    # The single node plans the same query without stages.
    single, _, _, _ = cluster
    plan = fetch(single, "EXPLAIN " + load_query(3)[0])
    assert "Network" not in "\n".join(str(v) for v in plan.column("plan").to_pylist())


@pytest.mark.parametrize("n", range(1, 23), ids=lambda n: f"q{n:02d}")
def test_distributed_answers_equal_single_node_and_duckdb(tpch_cluster, n):
    single, coordinator, _, duck = tpch_cluster
    sql, order_keys = load_query(n)
    explained = "\n".join(fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
    assert "DistributedExec" in explained, f"q{n:02d} was not distributed:\n{explained}"
    distributed = rows(fetch(coordinator, sql))
    alone = rows(fetch(single, sql))
    theirs = rows(duck.sql(sql).to_arrow_table())
    assert len(distributed) == len(alone) == len(theirs) > 0, (
        f"q{n:02d}: {len(distributed)} rows distributed, {len(alone)} single, {len(theirs)} DuckDB")
    if order_keys:
        keys = lambda rs: [tuple(r[k] for k in order_keys) for r in rs]
        assert rows_equal(keys(distributed), keys(theirs)), f"q{n:02d}: order differs"
    for other, name in ((alone, "single node"), (theirs, "DuckDB")):
        assert rows_equal(sorted(distributed, key=sort_key), sorted(other, key=sort_key)), (
            f"q{n:02d}: rows differ from {name}\ndistributed: {distributed[:5]}\n{name}: {other[:5]}")


def test_workers_need_the_secret(tmp_path):
    out = subprocess.run([BIN, "worker", "--listen", "127.0.0.1:0", "--storage", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "secret" in out.stderr, out.stderr
    out = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--storage", str(tmp_path / "s"),
                          "--workers", "grpc://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "secret" in out.stderr, out.stderr


@pytest.fixture(scope="module")
def changed_lineitem(tpch_cluster):
    """`lineitem_dv`: lineitem after a DELETE and an UPDATE through the coordinator, so its
    files carry deletion vectors (and the UPDATE's new rows a file of their own)."""
    _, coordinator, _, duck = tpch_cluster
    duck.execute(
        "CREATE VIEW lineitem_dv AS SELECT * REPLACE (CASE WHEN l_returnflag = 'R' AND "
        "l_linenumber = 1 THEN 0.01 ELSE l_discount END AS l_discount) FROM lineitem "
        "WHERE NOT (l_shipmode = 'AIR' OR l_quantity > 45)")
    with coordinator.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE lineitem_dv AS SELECT * FROM lineitem")
        cur.execute("DELETE FROM lineitem_dv WHERE l_shipmode = 'AIR' OR l_quantity > 45")
        cur.execute("UPDATE lineitem_dv SET l_discount = 0.01 WHERE l_returnflag = 'R' AND l_linenumber = 1")
    return "lineitem_dv"


@pytest.mark.parametrize("n", range(1, 23), ids=lambda n: f"q{n:02d}")
def test_distributed_answers_equal_single_node_after_deletes_and_updates(tpch_cluster, changed_lineitem, n):
    """Deletion vectors reach the workers: the 22 queries over the changed lineitem, distributed,
    equal the single node's answers (which skip deleted rows as every other test shows)."""
    single, coordinator, _, duck = tpch_cluster
    sql = load_query(n)[0].replace("lineitem", changed_lineitem)
    explained = "\n".join(fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
    distributed, alone = rows(fetch(coordinator, sql)), rows(fetch(single, sql))
    theirs = rows(duck.sql(sql).to_arrow_table())
    for other, name in ((alone, "single node"), (theirs, "DuckDB")):
        assert rows_equal(sorted(distributed, key=sort_key), sorted(other, key=sort_key)), (
            f"q{n:02d}: rows differ from {name}\ndistributed: {distributed[:5]}\n{name}: {other[:5]}")
    # q19's lineitem_dv scan is pruned to no file by the manifest statistics (its AIR rows are
    # deleted): nothing is left to distribute. Every other query runs in stages.
    if "file_groups={1 group: [[]]}" not in explained:
        assert "DistributedExec" in explained, f"q{n:02d} was not distributed:\n{explained}"


def test_deleted_rows_stay_deleted_on_workers(tpch_cluster, changed_lineitem):
    single, coordinator, _, duck = tpch_cluster
    sql = f"SELECT count(*) AS n, sum(l_discount) AS d FROM {changed_lineitem}"
    expected = duck.sql(
        "SELECT count(*) AS n, sum(CASE WHEN l_returnflag = 'R' AND l_linenumber = 1 THEN 0.01 "
        "ELSE l_discount END) AS d FROM lineitem WHERE NOT (l_shipmode = 'AIR' OR l_quantity > 45)"
    ).to_arrow_table()
    for server in (coordinator, single):
        assert rows_equal(rows(fetch(server, sql)), rows(expected))


def test_our_functions_run_on_the_coordinator(cluster):
    """A query calling one of Lakehouse's own functions is planned without stages."""
    _, coordinator, _, _ = cluster
    sql = "SELECT count(*) AS n FROM table_history('lineitem')"
    explained = "\n".join(fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
    assert "DistributedExec" not in explained, explained
    assert fetch(coordinator, sql).column("n")[0].as_py() >= 1


DISTRIBUTED_HEADER = "x-lakehouse-distributed"


def test_a_connection_can_turn_distribution_off(cluster):
    """`x-lakehouse-distributed: false` plans on the coordinator alone: through ADBC (prepared
    statements) and through a plain CommandStatementQuery (GetFlightInfo, DoGet); the answers
    stay the same. Any other value than true/false is refused naming the header."""
    single, coordinator, _, _ = cluster
    sql = load_query(3)[0]
    expected = sorted(rows(fetch(single, sql)), key=sort_key)
    for value, distributed in (("false", False), ("FALSE", False), ("true", True)):
        option = {f"adbc.flight.sql.rpc.call_header.{DISTRIBUTED_HEADER}": value}
        with coordinator.connect(**option) as conn, conn.cursor() as cur:
            cur.execute("EXPLAIN " + sql)
            explained = "\n".join(cur.fetch_arrow_table().column("plan").to_pylist())
            assert ("DistributedExec" in explained) == distributed, (value, explained)
            cur.execute(sql)
            assert rows_equal(sorted(rows(cur.fetch_arrow_table()), key=sort_key), expected)
            # A prepared query with a parameter is planned at execution under the same header.
            cur.execute("EXPLAIN SELECT count(*) FROM lineitem WHERE l_quantity > ?", parameters=(10,))
            explained = "\n".join(cur.fetch_arrow_table().column("plan").to_pylist())
            assert ("DistributedExec" in explained) == distributed, (value, explained)

    client = flight.FlightClient(coordinator.url)
    try:
        off = flight.FlightCallOptions(headers=[(DISTRIBUTED_HEADER.encode(), b"false")])
        descriptor = flight.FlightDescriptor.for_command(_command_statement_query("EXPLAIN " + sql))
        info = client.get_flight_info(descriptor, off)
        explained = "\n".join(client.do_get(info.endpoints[0].ticket, off).read_all()
                              .column("plan").to_pylist())
        assert "DistributedExec" not in explained, explained
        descriptor = flight.FlightDescriptor.for_command(_command_statement_query(sql))
        info = client.get_flight_info(descriptor, off)
        table = client.do_get(info.endpoints[0].ticket, off).read_all()
        assert rows_equal(sorted(rows(table), key=sort_key), expected)
        bad = flight.FlightCallOptions(headers=[(DISTRIBUTED_HEADER.encode(), b"maybe")])
        with pytest.raises(pa.ArrowInvalid) as refused:  # gRPC InvalidArgument
            client.get_flight_info(descriptor, bad)
        assert DISTRIBUTED_HEADER in str(refused.value) and "maybe" in str(refused.value)
    finally:
        client.close()


def test_workers_over_another_storage_refuse_the_tasks(cluster, tmp_path):
    """Workers started with another --storage than the coordinator's read another catalog:
    they refuse the tasks (catalog ids differ), and the query fails naming the cause."""
    single, _, _, _ = cluster
    strangers = [LakehouseServer(tmp_path / f"other{i}", log_path=tmp_path / f"stranger{i}.log",
                                 env=SECRET_ENV, command="worker") for i in range(2)]
    config = tmp_path / "coordinator.toml"
    config.write_text("[distributed]\nbytes_per_task = 1048576\n")
    try:
        coordinator = LakehouseServer(single.storage, "--workers",
                                      ",".join(s.url for s in strangers), "--config",
                                      str(config), log_path=tmp_path / "coordinator.log",
                                      env=SECRET_ENV)
        try:
            sql = load_query(3)[0]
            assert "DistributedExec" in "\n".join(
                fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
            with pytest.raises(Exception) as refused:
                fetch(coordinator, sql)
            assert "catalog" in str(refused.value), refused.value
            # Queries that stay on the coordinator still answer.
            assert fetch(coordinator, "SELECT count(*) AS n FROM region").column("n")[0].as_py() == 5
        finally:
            coordinator.stop()
    finally:
        for stranger in strangers:
            stranger.stop()


def test_workers_lists_each_worker_up_or_down(cluster, tmp_path):
    single, coordinator, workers, _ = cluster
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.split()[-1]
    listed = fetch(coordinator, "SELECT * FROM workers()").to_pylist()
    assert [r["url"] for r in listed] == [w.url for w in workers]
    for row in listed:
        assert row["state"] == "up" and row["version"] == version and row["error"] is None, row
        assert row["latency_ms"] >= 0
    dead = f"grpc://127.0.0.1:{free_port()}"
    other = LakehouseServer(single.storage, "--workers", f"{workers[0].url},{dead}",
                            log_path=tmp_path / "coordinator.log", env=SECRET_ENV)
    try:
        listed = fetch(other, "SELECT url, state, version, error FROM workers()").to_pylist()
        assert listed[0]["state"] == "up", listed
        assert listed[1]["url"] == dead and listed[1]["state"] == "down", listed
        assert listed[1]["version"] is None and "connect" in listed[1]["error"], listed
    finally:
        other.stop()
    # A server without workers lists none.
    assert fetch(single, "SELECT * FROM workers()").num_rows == 0


def test_a_worker_that_dies_or_hangs_fails_the_query_unavailable_and_is_skipped(cluster, tmp_path):
    """Three workers, worker_timeout_secs = 3. A worker killed while a query waits on it fails
    that query at once with Unavailable naming it; the next query runs on the others. A worker
    that hangs (SIGSTOP) fails its query within the keep-alive timeout, not later. A worker that
    comes back on its address is used again. The coordinator stays healthy throughout."""
    import os
    import signal
    import threading
    import time

    single, _, _, _ = cluster
    workers = [LakehouseServer(single.storage, log_path=tmp_path / f"w{i}.log", env=SECRET_ENV,
                               command="worker") for i in range(3)]
    config = tmp_path / "coordinator.toml"
    config.write_text("[distributed]\nbytes_per_task = 1048576\nworker_timeout_secs = 3\n")
    coordinator = LakehouseServer(single.storage, "--workers", ",".join(w.url for w in workers),
                                  "--config", str(config), log_path=tmp_path / "c.log",
                                  env=SECRET_ENV)
    running = list(workers)
    try:
        sql, _ = load_query(9)
        expected = rows(fetch(single, sql))
        assert rows_equal(rows(fetch(coordinator, sql)), expected)

        # Killed mid-query: stopped first, so the query is certainly waiting on it.
        victim = workers[1]
        os.kill(victim.proc.pid, signal.SIGSTOP)
        failure = {}

        def run():
            started = time.monotonic()
            try:
                fetch(coordinator, sql)
            except Exception as e:  # noqa: BLE001
                failure["error"], failure["secs"] = str(e), time.monotonic() - started

        query = threading.Thread(target=run)
        query.start()
        time.sleep(0.5)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        running.remove(victim)
        query.join(timeout=30)
        assert not query.is_alive(), "the query hung after its worker died"
        assert "Unavailable" in failure["error"], failure
        assert f"worker {victim.url} is unavailable" in failure["error"], failure
        assert failure["secs"] < 3 + 0.5 + 2, failure

        # The next query runs on the two others.
        assert rows_equal(rows(fetch(coordinator, sql)), expected)
        states = {r["url"]: r["state"] for r in fetch(coordinator, "SELECT * FROM workers()").to_pylist()}
        assert states == {workers[0].url: "up", victim.url: "down", workers[2].url: "up"}, states

        # Hung: fails within the keep-alive timeout.
        hung = workers[2]
        os.kill(hung.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Exception) as timed_out:
            fetch(coordinator, sql)
        elapsed = time.monotonic() - started
        os.kill(hung.proc.pid, signal.SIGCONT)
        assert f"worker {hung.url} is unavailable" in str(timed_out.value), timed_out.value
        assert elapsed < 3 * 3, elapsed

        # Back on its address: used again once a probe finds it.
        back = LakehouseServer(single.storage, log_path=tmp_path / "back.log", env=SECRET_ENV,
                               command="worker", port=victim.port)
        running.append(back)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [r["state"] for r in fetch(coordinator, "SELECT * FROM workers()").to_pylist()]
            if states == ["up", "up", "up"]:
                break
            time.sleep(0.5)
        assert states == ["up", "up", "up"], states
        assert "tasks=3" in "\n".join(fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
        assert rows_equal(rows(fetch(coordinator, sql)), expected)
    finally:
        coordinator.stop()
        for worker in running:
            worker.stop()


def test_each_worker_applies_its_own_memory_limit(cluster, tmp_path):
    """Workers started with a tiny `[query] memory_limit_bytes` refuse the distributed join's
    hash table (ResourceExhausted), though the coordinator has no limit; the same query on the
    single node, unlimited, answers."""
    single, _, _, _ = cluster
    workers = [LakehouseServer(single.storage, "--memory-limit-bytes", "200000",
                               log_path=tmp_path / f"w{i}.log", env=SECRET_ENV, command="worker")
               for i in range(2)]
    config = tmp_path / "coordinator.toml"
    config.write_text("[distributed]\nbytes_per_task = 1048576\n")
    try:
        coordinator = LakehouseServer(single.storage, "--workers", ",".join(w.url for w in workers),
                                      "--config", str(config), log_path=tmp_path / "c.log",
                                      env=SECRET_ENV)
        try:
            sql, _ = load_query(9)
            with pytest.raises(Exception) as refused:
                fetch(coordinator, sql)
            message = str(refused.value)
            assert "Resources exhausted" in message, message
            assert "(ResourceExhausted;" in message, message  # the gRPC code
            assert fetch(single, sql).num_rows > 0
        finally:
            coordinator.stop()
    finally:
        for worker in workers:
            worker.stop()


# A distributed join far longer than any test: lineitem with itself on the supplier
# (600,000 x ~600 rows at SF 0.1), counted.
ENDLESS_JOIN = ("SELECT count(*) AS n FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey "
                "WHERE a.l_comment <> b.l_comment")


def _cancel_flight_info_action(info):
    """A Flight `CancelFlightInfo` action: its body is Flight.proto's `CancelFlightInfoRequest
    { FlightInfo info = 1; }` (the FlightInfo as its serialized bytes, the same on the wire)."""
    body = proto_message("arrow.flight.protocol", "CancelFlightInfoRequest",
                         info=(1, "bytes", info.serialize()))
    return flight.Action("CancelFlightInfo", body.SerializeToString())


def _running_tasks(coordinator):
    listed = fetch(coordinator, "SELECT url, state, running_tasks FROM workers()").to_pylist()
    assert all(r["state"] == "up" for r in listed), listed
    return sum(r["running_tasks"] for r in listed)


def _wait_for_tasks(coordinator, done, timeout=30):
    """Polls `workers()` until `done(total running tasks)`; returns the last total."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            total = _running_tasks(coordinator)
        except Exception as e:
            # A coordinator with a short `timeout_secs` may stop the probe itself while the
            # workers are still starved of CPU by the tasks being stopped: ask again.
            if "timeout_secs" not in str(e) or time.monotonic() > deadline:
                raise
            continue
        if done(total) or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def _start_endless_join(coordinator):
    """Starts ENDLESS_JOIN through a plain CommandStatementQuery on a thread; answers its
    FlightInfo, the thread and a dict where the thread leaves the error it ended with."""
    import threading

    client = flight.FlightClient(coordinator.url)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        _command_statement_query(ENDLESS_JOIN)))
    ended = {}

    def run():
        # Chunk by chunk: pyarrow's read_all() turns a Cancelled end into a simulated SIGINT
        # in the main thread (its signal handling takes ArrowCancelled for an interrupt).
        try:
            reader = client.do_get(info.endpoints[0].ticket)
            while True:
                try:
                    reader.read_chunk()
                except StopIteration:
                    break
            ended["error"] = None
        except Exception as e:  # noqa: BLE001
            ended["error"] = e
        finally:
            client.close()

    thread = threading.Thread(target=run)
    thread.start()
    return info, thread, ended


def test_cancel_stops_the_workers_tasks(cluster):
    """`workers()` counts the tasks each worker runs: none when idle, some while a distributed
    query runs; CancelFlightInfo on the query ends it with Cancelled and its tasks on every
    worker end too (the count drops to 0)."""
    _, coordinator, _, _ = cluster
    assert "DistributedExec" in "\n".join(
        fetch(coordinator, "EXPLAIN " + ENDLESS_JOIN).column("plan").to_pylist())
    assert _wait_for_tasks(coordinator, lambda n: n == 0) == 0
    info, thread, ended = _start_endless_join(coordinator)
    try:
        assert _wait_for_tasks(coordinator, lambda n: n > 0) > 0
        assert "error" not in ended, ended  # still running
        client = flight.FlightClient(coordinator.url)
        try:
            list(client.do_action(_cancel_flight_info_action(info)))
        finally:
            client.close()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the cancelled query kept running"
        assert isinstance(ended["error"], flight.FlightCancelledError), ended
        assert _wait_for_tasks(coordinator, lambda n: n == 0) == 0
    finally:
        thread.join(timeout=60)
    # The workers answer the next query.
    assert fetch(coordinator, "SELECT count(*) AS n FROM region").column("n")[0].as_py() == 5


def test_timeout_and_result_limit_stop_the_workers_tasks(cluster, tmp_path):
    """A coordinator with `[query] timeout_secs = 3` stops a long distributed query with
    DeadlineExceeded, and one with `max_result_bytes` stops a distributed query whose result is
    larger with ResourceExhausted; either way the workers' tasks end. While the long query runs
    it holds the only query slot (`max_concurrent_queries = 1`): another query is refused."""
    import time

    single, _, workers, _ = cluster
    config = tmp_path / "limits.toml"
    config.write_text("[distributed]\nbytes_per_task = 1048576\n"
                      "[query]\ntimeout_secs = 3.0\nmax_result_bytes = 1000000\n"
                      "max_concurrent_queries = 1\nqueue_timeout_secs = 0.0\n")
    coordinator = LakehouseServer(single.storage, "--workers", ",".join(w.url for w in workers),
                                  "--config", str(config), log_path=tmp_path / "c.log",
                                  env=SECRET_ENV)
    try:
        _, thread, ended = _start_endless_join(coordinator)
        time.sleep(1)
        with pytest.raises(Exception) as busy:
            fetch(coordinator, "SELECT 1")
        assert "max_concurrent_queries" in str(busy.value), busy.value
        thread.join(timeout=60)
        assert not thread.is_alive(), "the query outlived its timeout"
        assert isinstance(ended["error"], flight.FlightTimedOutError), ended
        assert "timeout_secs" in str(ended["error"]), ended
        assert _wait_for_tasks(coordinator, lambda n: n == 0) == 0

        sql = "SELECT l_orderkey, l_comment FROM lineitem WHERE l_quantity > 1"
        assert "DistributedExec" in "\n".join(
            fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())
        with pytest.raises(Exception) as limited:
            fetch(coordinator, sql)
        assert "max_result_bytes" in str(limited.value) or "ResourceExhausted" in str(limited.value), \
            limited.value
        assert _wait_for_tasks(coordinator, lambda n: n == 0) == 0
    finally:
        coordinator.stop()


def test_a_workers_file_is_reread_when_it_changes(cluster, tmp_path):
    """`--workers-file`: the coordinator lists the file's workers and follows its changes
    within seconds (added, emptied); a file that becomes unreadable or holds a bad URL
    keeps the last list; a missing file stops the start naming it."""
    import time

    single, _, workers, _ = cluster
    listing = tmp_path / "workers"
    listing.write_text(f"# two to begin with\n{workers[0].url}\n{workers[1].url}\n")
    config = tmp_path / "coordinator.toml"
    config.write_text("[distributed]\nbytes_per_task = 1048576\n")
    coordinator = LakehouseServer(single.storage, "--workers-file", str(listing), "--config",
                                  str(config), log_path=tmp_path / "c.log", env=SECRET_ENV)
    sql = load_query(3)[0]

    def listed_after_change(expected):
        deadline = time.monotonic() + 15
        while True:
            urls = [r["url"] for r in fetch(coordinator, "SELECT url, state FROM workers()").to_pylist()
                    if r["state"] == "up"]
            if urls == expected or time.monotonic() > deadline:
                return urls
            time.sleep(0.3)

    def explained():
        return "\n".join(fetch(coordinator, "EXPLAIN " + sql).column("plan").to_pylist())

    try:
        assert listed_after_change([workers[0].url, workers[1].url]) == [workers[0].url, workers[1].url]
        assert "tasks=2" in explained()
        listing.write_text(", ".join(w.url for w in workers) + "\n")
        assert listed_after_change([w.url for w in workers]) == [w.url for w in workers]
        assert "tasks=3" in explained()
        # A bad line keeps the last good list.
        listing.write_text(f"{workers[0].url}\nftp://nowhere:1\n")
        time.sleep(3 * 2)
        assert listed_after_change([w.url for w in workers]) == [w.url for w in workers]
        assert "ftp://nowhere:1" in (tmp_path / "c.log").read_text()
        # Emptied: no workers, the query runs here.
        listing.write_text("# none\n")
        assert listed_after_change([]) == []
        assert "DistributedExec" not in explained()
        assert rows_equal(sorted(rows(fetch(coordinator, sql)), key=sort_key),
                          sorted(rows(fetch(single, sql)), key=sort_key))
    finally:
        coordinator.stop()
    out = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--storage", str(single.storage),
                          "--workers-file", str(tmp_path / "missing")], capture_output=True,
                         text=True, timeout=60, env={**__import__("os").environ, **SECRET_ENV})
    assert out.returncode != 0 and "missing" in out.stderr and "workers file" in out.stderr, out.stderr
