"""Crash safety of row-level changes: a writer runs UPDATE, DELETE, MERGE, upserts and OPTIMIZE
in a loop (automatic compaction on)
while the server is killed with SIGKILL at random moments and restarted on the same storage.
After each restart every acknowledged change is there, the statement in flight at the kill is
either wholly applied or not at all, and the table reads.

`LAKEHOUSE_CRASH_ROUNDS` sets the number of kills (default 4 in the suite;
`scripts/crash-test.sh` runs 100)."""

import os
import random
import threading
import time

import adbc_driver_manager

from conftest import LakehouseServer

ACCOUNTS = 12


def statements(step):
    """The step-th statement and its effect: {id: +n} on the `n` of existing ids, and the ids
    it inserts or deletes. Every change touches two rows, so a half-applied one shows; OPTIMIZE
    changes no row."""
    a, b = step % ACCOUNTS, (step * 7 + 3) % ACCOUNTS
    if a == b:
        b = (b + 1) % ACCOUNTS
    kind = step % 5
    if kind == 0:
        return f"UPDATE acct SET n = n + 1 WHERE id IN ({a}, {b})", {a: 1, b: 1}, None
    if kind == 1:
        return (f"MERGE INTO acct USING (SELECT {a} AS id UNION ALL SELECT {b}) AS s "
                f"ON acct.id = s.id WHEN MATCHED THEN UPDATE SET n = acct.n + 2"), {a: 2, b: 2}, None
    if kind == 2:
        extra = 1000 + step
        return (f"INSERT INTO acct VALUES ({a}, 0), ({extra}, 5) ON CONFLICT (id) "
                f"DO UPDATE SET n = acct.n + 3"), {a: 3}, ("insert", extra)
    if kind == 3:
        return f"DELETE FROM acct WHERE id >= 1000 AND id < {1000 + step}", {}, ("delete", step)
    return "OPTIMIZE acct", {}, None


def read(server):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, n FROM acct ORDER BY id")
        return {r["id"]: r["n"] for r in cur.fetch_arrow_table().to_pylist()}


def test_sigkill_during_row_changes_loses_no_acknowledged_change(tmp_path):
    rounds = int(os.environ.get("LAKEHOUSE_CRASH_ROUNDS", "4"))
    storage = tmp_path / "data"
    server = LakehouseServer(storage, log_path=tmp_path / "server-0.log")
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE acct (id BIGINT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (id))")
        values = ", ".join(f"({i}, 0)" for i in range(ACCOUNTS))
        cur.execute(f"INSERT INTO acct VALUES {values}")
    expected = {i: 0 for i in range(ACCOUNTS)}
    step = 0
    total_acked = 0
    rng = random.Random(7)
    for round_ in range(rounds):
        acked = []
        in_flight = []

        def writer():
            nonlocal step
            try:
                with server.connect() as conn, conn.cursor() as cur:
                    while True:
                        sql, effect, extra = statements(step)
                        in_flight[:] = [(sql, effect, extra)]
                        cur.execute(sql)
                        cur.fetch_arrow_table()
                        acked.append((sql, effect, extra))
                        in_flight.clear()
                        step += 1
            except adbc_driver_manager.Error:
                pass

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(rng.uniform(0.3, 1.5))
        server.proc.kill()
        server.proc.wait()
        server.log.close()
        thread.join(timeout=60)
        assert not thread.is_alive()
        server = LakehouseServer(storage, log_path=tmp_path / f"server-{round_ + 1}.log")
        total_acked += len(acked)
        for _, effect, extra in acked:
            apply(expected, effect, extra)
        got = read(server)
        if in_flight:
            _, effect, extra = in_flight[0]
            applied = dict(expected)
            apply(applied, effect, extra)
            assert got in (expected, applied), (
                f"round {round_}: the statement in flight at the kill ({in_flight[0][0]}) "
                f"was half applied or an acknowledged change is missing:\n{got}\n{expected}")
            if got == applied:
                expected = applied
                step += 1
        else:
            assert got == expected, f"round {round_}:\n{got}\n{expected}"
    server.stop()
    assert total_acked >= rounds, f"only {total_acked} statements were acknowledged"



def apply(state, effect, extra):
    for key, plus in effect.items():
        state[key] = state.get(key, 0) + plus
    if extra and extra[0] == "insert":
        state[extra[1]] = 5
    elif extra and extra[0] == "delete":
        for key in [k for k in state if 1000 <= k < 1000 + extra[1]]:
            del state[key]
