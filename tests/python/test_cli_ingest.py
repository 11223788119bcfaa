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
