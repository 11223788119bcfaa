"""Time travel through ADBC (the DB-API a BI tool or notebook uses): VERSION AS OF, TIMESTAMP AS OF
and FOR SYSTEM_TIME AS OF after updates, deletes and a compaction; table_history; RESTORE; the
errors a user meets."""

import adbc_driver_manager
import pytest

from test_mutations import manual_server, rows


def test_versions_history_and_restore_over_adbc(tmp_path):
    server = manual_server(tmp_path)
    with server.connect() as conn, conn.cursor() as cur:
        for sql in [
            "CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR)",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            "UPDATE t SET v = 'B' WHERE id = 2",
            "DELETE FROM t WHERE id = 3",
            "OPTIMIZE t",
        ]:
            cur.execute(sql)
            cur.fetch_arrow_table()
        history = rows(cur, "SELECT version, operation, total_rows, committed_by, "
                            "CAST(created_at AS VARCHAR) FROM table_history('t')")
        assert [(v, op, n, user) for v, op, n, user, _ in history] == [
            (5, "compact", 2, "anonymous"), (4, "delete", 2, "anonymous"),
            (3, "update", 3, "anonymous"), (2, "append", 3, "anonymous"),
            (1, "create", 0, "anonymous")]
        created = {v: at for v, _, _, _, at in history}
        assert rows(cur, "SELECT id, v FROM t VERSION AS OF 2 ORDER BY id") == [
            (1, "a"), (2, "b"), (3, "c")]
        assert rows(cur, f"SELECT id, v FROM t TIMESTAMP AS OF '{created[3]}' ORDER BY id") == [
            (1, "a"), (2, "B"), (3, "c")]
        assert rows(cur, f"SELECT count(*) FROM t FOR SYSTEM_TIME AS OF '{created[4]}'") == [(2,)]
        # Two versions in one query: what the update changed.
        assert rows(cur, "SELECT a.v AS old, b.v AS new FROM t VERSION AS OF 2 a JOIN t VERSION AS OF 3 b "
                         "ON a.id = b.id WHERE a.v <> b.v") == [("b", "B")]
        # A prepared statement with a parameter reads the old version too.
        cur.execute("SELECT v FROM t VERSION AS OF 2 WHERE id = ?", parameters=(3,))
        assert cur.fetch_arrow_table().column("v").to_pylist() == ["c"]

        cur.execute("RESTORE TABLE t TO VERSION 2")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [3]
        assert rows(cur, "SELECT id, v FROM t ORDER BY id") == [(1, "a"), (2, "b"), (3, "c")]
        assert rows(cur, "SELECT version, operation FROM table_history('t') LIMIT 1") == [
            (6, "restore")]

        for sql, message in [
            ("SELECT * FROM t VERSION AS OF 99", "versions are 1..=6"),
            ("SELECT * FROM t TIMESTAMP AS OF '1999-01-01'", "oldest kept version 1"),
            ("UPDATE t VERSION AS OF 1 SET v = 'x'", "RESTORE"),
            ("RESTORE TABLE t TO VERSION 0", "no version 0"),
        ]:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(sql)
                cur.fetch_arrow_table()
            assert message in str(err.value), (sql, str(err.value))
        assert rows(cur, "SELECT max(version) FROM table_history('t')") == [(6,)]
    server.stop()
