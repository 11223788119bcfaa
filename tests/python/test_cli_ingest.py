"""`lakehouse ingest` as a user runs it: the real binary, exit codes, messages, then queries."""

import subprocess

from conftest import BIN


def run_ingest(server, *args):
    return subprocess.run(
        [BIN, "ingest", "--server", server.url, *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )


def test_cli_ingests_files_and_reports_no_ops_and_errors(server, tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write("id,name,score\n")
        for i in range(200_000):
            f.write(f"{i},name-{i:08d},{i * 0.5}\n")
    assert big.stat().st_size > 4 * 1024 * 1024  # large enough for the progress bar

    out = run_ingest(server, "--table", "scores", big)
    assert out.returncode == 0, out.stderr
    assert "200000 rows" in out.stdout and "public.scores version 1" in out.stdout

    again = run_ingest(server, "--table", "scores", big)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,score\n1,a,2.0\n2,b\n")
    out = run_ingest(server, "--table", "scores", bad)
    assert out.returncode == 1
    assert "bad.csv line 3" in out.stderr, out.stderr

    nested = tmp_path / "events.jsonl"
    nested.write_text('{"id": 1, "user": {"name": "ann"}}\n{"id": 2, "user": {"name": "bob"}}\n')
    out = run_ingest(server, "--table", "staging.events", nested)
    assert out.returncode == 0, out.stderr

    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n, max(score) AS m FROM scores")
        assert cur.fetch_arrow_table().to_pylist() == [{"n": 200_000, "m": 199_999 * 0.5}]
        cur.execute('SELECT "user.name" AS name FROM staging.events ORDER BY id')
        assert cur.fetch_arrow_table().column("name").to_pylist() == ["ann", "bob"]


def test_cli_needs_a_reachable_server(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("a\n1\n")
    out = subprocess.run(
        [BIN, "ingest", "--server", "grpc://127.0.0.1:1", "--table", "t", str(f)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "cannot connect" in out.stderr, out.stderr


def test_jobs_send_files_at_once_with_the_same_rows_as_one_at_a_time(server, tmp_path):
    """`--jobs 4` over 8 files (the first creates the table, the others follow 4 at a time)
    gives the table one at a time gives; a bad file among them fails alone."""
    files = tmp_path / "parts"
    files.mkdir()
    for f in range(8):
        with open(files / f"part{f}.csv", "w") as out:
            out.write("id,name,score\n")
            for i in range(f * 100_000, f * 100_000 + (50_000 if f % 2 else 300)):
                out.write(f"{i},n{i},{i % 997 * 0.25}\n")
    together = run_ingest(server, "--table", "together", "--jobs", "4", files)
    assert together.returncode == 0, together.stderr
    assert "8 files (0 failed), 201200 rows" in together.stdout, together.stdout
    assert "(4 at a time)" in together.stdout
    alone = run_ingest(server, "--table", "alone", "--jobs", "1", files)
    assert alone.returncode == 0, alone.stderr
    with server.connect() as conn, conn.cursor() as cur:
        def table(name):
            cur.execute(f"SELECT * FROM {name} ORDER BY id")
            return cur.fetch_arrow_table()
        assert table("together").equals(table("alone"))
        cur.execute("SELECT max(version) FROM table_history('together')")
        assert cur.fetchone()[0] == 8  # one commit per file

    # A malformed file fails alone; the others are committed; the exit code says so.
    (files / "part3.csv").write_text("id,name,score\n1,a,2.0\n2,b\n")
    mixed = run_ingest(server, "--table", "mixed", "--jobs", "3", files)
    assert mixed.returncode == 1
    assert "part3.csv line 3" in mixed.stderr, mixed.stderr
    assert "8 files (1 failed)" in mixed.stdout, mixed.stdout
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM mixed")
        assert cur.fetchone()[0] == 201200 - 50_000

    # The order of the files decides the rows of an upsert or a replace: one at a time.
    replace = run_ingest(server, "--table", "alone", "--mode", "replace", "--jobs", "4",
                         files / "part0.csv", files / "part2.csv")
    assert replace.returncode == 0, replace.stderr
    assert "(1 at a time)" in replace.stdout, replace.stdout
    bad_jobs = run_ingest(server, "--table", "t", "--jobs", "0", files)
    assert bad_jobs.returncode == 2 and "--jobs" in bad_jobs.stderr, bad_jobs.stderr
