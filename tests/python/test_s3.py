"""`--storage s3://bucket/prefix` against a real S3-compatible server (moto, from PyPI), which
enforces conditional creates (`If-None-Match: *`) as S3 does."""

import json
import os
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pyarrow as pa
import pytest

from conftest import BIN, LakehouseServer, start_moto

BUCKET = "lakehouse-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    recording = tmp_path_factory.mktemp("moto") / "recording.jsonl"
    moto, env = start_moto(log, {"MOTO_RECORDER_FILEPATH": str(recording)})
    endpoint = env["AWS_ENDPOINT"]
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield env, client
    moto.terminate()
    moto.wait(timeout=30)


def people(start, stop):
    ids = list(range(start, stop))
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids]})


def keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_s3_storage_commits_restarts_and_races(s3, tmp_path):
    env, client = s3
    storage = f"s3://{BUCKET}/warehouse"
    a = LakehouseServer(storage, log_path=tmp_path / "a.log", env=env)
    b = LakehouseServer(storage, log_path=tmp_path / "b.log", env=env)
    try:
        with a.connect() as conn, conn.cursor() as cur:
            assert cur.adbc_ingest("people", people(0, 10), mode="create") == 10
        manifests = keys(client, "warehouse/tables/public/people/_manifests/")
        assert manifests == ["warehouse/tables/public/people/_manifests/00000000000000000001.json"]

        # Ten appends at once through two servers on one bucket: every one lands, each as its
        # own version (losers of a race re-apply on the new head).
        def append(i):
            server = a if i % 2 else b
            with server.connect() as conn, conn.cursor() as cur:
                return cur.adbc_ingest("people", people(100 * i, 100 * i + 5), mode="append")

        with ThreadPoolExecutor(max_workers=10) as pool:
            assert list(pool.map(append, range(1, 11))) == [5] * 10
        assert len(keys(client, "warehouse/tables/public/people/_manifests/")) == 11
        for server in (a, b):
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) AS n, count(DISTINCT id) AS d FROM people")
                assert cur.fetch_arrow_table().to_pylist() == [{"n": 60, "d": 60}]
    finally:
        a.stop()
        b.stop()

    # A restart rebuilds everything from the bucket alone.
    c = LakehouseServer(storage, log_path=tmp_path / "c.log", env=env)
    try:
        with c.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM people")
            assert cur.fetch_arrow_table().column("n").to_pylist() == [60]
            assert conn.adbc_get_table_schema("people").names == ["id", "name"]
    finally:
        c.stop()

    # Cleanup works on S3 too (nothing to remove: no commit failed).
    out = subprocess.run([BIN, "cleanup", "--storage", storage, "--grace-secs", "0"],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "deleted 0 unreferenced" in out.stdout, out.stdout


def test_a_missing_bucket_fails_at_start_with_the_cause(s3, tmp_path):
    env, _ = s3
    with pytest.raises(RuntimeError) as e:
        LakehouseServer("s3://no-such-bucket/x", log_path=tmp_path / "s.log", env=env)
    message = str(e.value)
    assert "server exited early" in message and "object storage error" in message, message


def recorder(env, action):
    """Calls moto's request recorder (`reset-recording`, `start-recording`, `stop-recording`,
    `download-recording`); the download answers the recorded requests, one JSON per line."""
    method = "GET" if action == "download-recording" else "POST"
    request = urllib.request.Request(f"{env['AWS_ENDPOINT']}/moto-api/recorder/{action}",
                                     method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def data_gets(env):
    """GET requests for data files and deletion vectors since the last reset, as moto recorded
    them."""
    lines = recorder(env, "download-recording").splitlines()
    requests = [json.loads(line) for line in lines if line.strip()]
    return [r for r in requests
            if r["method"] == "GET" and ("/data/" in r["url"] or "/deletes/" in r["url"])]


def test_a_repeated_query_reads_no_data_from_s3(s3, tmp_path):
    env, client = s3
    server = LakehouseServer(f"s3://{BUCKET}/cached", log_path=tmp_path / "cached.log", env=env)
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.adbc_ingest("people", people(0, 20000), mode="create")
            cur.adbc_ingest("people", people(20000, 40000), mode="append")
            cur.execute("DELETE FROM people WHERE id % 7 = 0")
            cur.fetchall()
            sql = "SELECT count(*), sum(id), max(name) FROM people WHERE name LIKE 'n1%'"
            recorder(env, "reset-recording")
            recorder(env, "start-recording")
            cur.execute(sql)
            first = cur.fetchall()
            cold = data_gets(env)
            assert any("/deletes/" in r["url"] for r in cold), "deletion vectors are read"
            assert any("/data/" in r["url"] for r in cold), "the first run reads the data files"
            recorder(env, "reset-recording")
            cur.execute(sql)
            assert cur.fetchall() == first
            assert data_gets(env) == [], "a repeated run reads them from the cache"
            recorder(env, "stop-recording")
            cur.execute("SELECT hits, misses FROM cache_stats()")
            hits, misses = cur.fetchall()[0]
            # Every cold GET went through the cache; the repeated run was served from it
            # (DataFusion keeps the footers it parsed, so it asks for fewer ranges again).
            assert misses >= len(cold) and hits > 0, (hits, misses, len(cold))
    finally:
        server.stop()


def test_a_disk_tier_keeps_s3_reads_across_a_restart(s3, tmp_path):
    """`[cache] disk_path`: ranges a query reads from S3 are kept on local disk; after a
    restart, the same query reads its data files and deletion vectors from there, not S3."""
    env, _ = s3
    config = tmp_path / "lakehouse.toml"
    config.write_text(f'[cache]\ndisk_path = "{tmp_path / "disk"}"\n'
                      f"disk_bytes = {256 << 20}\n")
    storage = f"s3://{BUCKET}/disk-cached"
    sql = "SELECT count(*), sum(id), max(name) FROM people WHERE name LIKE 'n2%'"

    def serve(name):
        return LakehouseServer(storage, "--config", str(config),
                               log_path=tmp_path / f"{name}.log", env=env)

    server = serve("load")
    try:
        with server.connect() as conn, conn.cursor() as cur:
            cur.adbc_ingest("people", people(0, 30000), mode="create")
            cur.execute("DELETE FROM people WHERE id % 5 = 0")
            cur.fetchall()
    finally:
        server.stop()
    # The first run of the query after a start reads S3 (and writes the disk tier).
    answers = []
    for name in ("cold", "restarted"):
        server = serve(name)
        try:
            with server.connect() as conn, conn.cursor() as cur:
                recorder(env, "reset-recording")
                recorder(env, "start-recording")
                cur.execute(sql)
                answers.append(cur.fetchall())
                gets = data_gets(env)
                recorder(env, "stop-recording")
                cur.execute("SELECT cache, hits, misses FROM cache_stats() ORDER BY cache")
                rows = cur.fetchall()
        finally:
            server.stop()
        assert [r[0] for r in rows] == ["data", "data_disk"], rows
        _, disk_hits, disk_misses = rows[1]
        if name == "cold":
            assert any("/data/" in r["url"] for r in gets), "the first run reads S3"
            assert any("/deletes/" in r["url"] for r in gets)
            assert disk_misses == len(gets) and disk_hits == 0, (rows, len(gets))
        else:
            assert gets == [], [r["url"] for r in gets]
            assert disk_hits > 0 and disk_misses == 0, rows
    assert answers[0] == answers[1]
    assert any((tmp_path / "disk").iterdir()), "the disk tier holds blocks"
