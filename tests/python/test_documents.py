"""`lakehouse ingest --embed`: real documents chunked and embedded on the server (the real
MiniLM model server), checked through Flight SQL (ADBC): offsets and overlap, idempotent
re-ingest, one changed file replaced in one commit, --prune, rows of a CSV, and bad input."""

import glob
import hashlib
import shutil
import subprocess

import pytest

from conftest import BIN, configured_server, free_port

APACHE = "/usr/share/common-licenses/Apache-2.0"  # Debian base-files
GPL = "/usr/share/common-licenses/GPL-3"
HTML = "/usr/share/doc/base-passwd/users-and-groups.html"  # Debian base-passwd

PLANTED = """# Facilities handbook

## Parking

Visitors park in the north lot; the barrier opens with the code printed on the badge.

## Bicycles

The bicycle cellar under building C is unlocked from seven in the morning until eight in the
evening. Employees keep their bicycles in the cellar, never in the corridors.
"""


def run_ingest(server, *args):
    return subprocess.run([BIN, "ingest", "--server", server.url, *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def markdown_license():
    """A real Markdown document from a wheel the test venv installs (numpy's licenses)."""
    found = sorted(glob.glob(str(
        __import__("pathlib").Path(__import__("numpy").__file__).parents[1]
        / "numpy-*.dist-info" / "licenses" / "**" / "LICENSE.md"), recursive=True))
    assert found, "numpy ships LICENSE.md files"
    return found[0]


@pytest.fixture
def doc_server(tmp_path, model_server):
    server = configured_server(tmp_path,
                               model_server.embedding_toml() + model_server.chat_toml())
    yield server
    server.stop()


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "licenses").mkdir(parents=True)
    (root / "guides").mkdir()
    shutil.copy(APACHE, root / "licenses" / "apache-2.0.txt")
    shutil.copy(GPL, root / "licenses" / "gpl-3.txt")
    shutil.copy(markdown_license(), root / "licenses" / "numpy-random.md")
    shutil.copy(HTML, root / "guides" / "users-and-groups.html")
    (root / "guides" / "facilities.md").write_text(PLANTED)
    (root / ".hidden.txt").write_text("never ingested")
    (root / "notes.bin").write_bytes(b"\x00\x01 not a document")
    return root


def chunks(conn, table="docs"):
    with conn.cursor() as cur:
        cur.execute(f"SELECT doc_id, chunk_index, text, source, byte_start, byte_end, "
                    f"content_hash FROM {table} ORDER BY doc_id, chunk_index")
        return [dict(zip(["doc_id", "chunk_index", "text", "source", "byte_start", "byte_end",
                          "content_hash"], row)) for row in cur.fetchall()]


def lance_versions(server, table="docs"):
    """Commits of the table's Lance dataset (its manifests on disk)."""
    return len(glob.glob(str(server.storage / "tables" / "public" / table / "lance" / "*"
                             / "_versions" / "*.manifest")))


def test_a_directory_is_chunked_with_offsets_and_overlap_and_reingest_is_idempotent(
        doc_server, corpus):
    out = run_ingest(doc_server, "--table", "docs", "--embed", "--chunk-size", 400,
                     "--chunk-overlap", 80, corpus)
    assert out.returncode == 0, out.stderr
    assert "5 files, 5 documents" in out.stdout, out.stdout
    assert "documents/s" in out.stdout and "chunks/s" in out.stdout

    with doc_server.connect() as conn:
        rows = chunks(conn)
    by_doc = {}
    for row in rows:
        by_doc.setdefault(row["doc_id"], []).append(row)
    assert sorted(by_doc) == ["guides/facilities.md", "guides/users-and-groups.html",
                              "licenses/apache-2.0.txt", "licenses/gpl-3.txt",
                              "licenses/numpy-random.md"]
    for doc_id, doc_rows in by_doc.items():
        path = corpus / doc_id
        data = path.read_bytes()
        assert [r["chunk_index"] for r in doc_rows] == list(range(len(doc_rows)))
        assert all(r["source"] == doc_id for r in doc_rows)
        assert all(r["content_hash"] == hashlib.sha256(data).hexdigest() for r in doc_rows)
        for r in doc_rows:
            assert 0 < len(r["text"]) <= 400, r
            assert r["byte_end"] - r["byte_start"] == len(r["text"].encode()), r
            if not doc_id.endswith(".html"):
                # Offsets locate the chunk in the file itself.
                assert data[r["byte_start"]:r["byte_end"]].decode() == r["text"], r
        for a, b in zip(doc_rows, doc_rows[1:]):
            assert a["byte_start"] < b["byte_start"] and a["byte_end"] <= b["byte_end"]
            if b["byte_start"] < a["byte_end"] and not doc_id.endswith(".html"):
                shared = data[b["byte_start"]:a["byte_end"]].decode()
                assert len(shared) <= 80, (a, b)
    gpl = by_doc["licenses/gpl-3.txt"]
    assert len(gpl) >= 35400 // 400
    assert any(b["byte_start"] < a["byte_end"] for a, b in zip(gpl, gpl[1:])), \
        "neighbouring chunks overlap"
    html = " ".join(r["text"] for r in by_doc["guides/users-and-groups.html"])
    assert "</" not in html and "<p" not in html and "href=" not in html, html
    assert "root" in html

    # The chunks are searchable: the planted document answers its question first.
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT doc_id, text FROM vector_search('docs', "
                    "'Where do employees keep their bicycles?', 3)")
        top = cur.fetchall()
    assert top[0][0] == "guides/facilities.md", top
    assert "bicycle" in top[0][1]
    # ... and rag answers from them, citing the planted document first.
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT answer, sources FROM rag('Where do employees keep their bicycles?', "
                    "'docs')")
        answer, sources = cur.fetchone()
    assert answer.strip()
    assert sources[0]["doc_id"] == "guides/facilities.md", sources

    # Unchanged: every file is a no-op and nothing is committed.
    versions = lance_versions(doc_server)
    again = run_ingest(doc_server, "--table", "docs", "--embed", corpus)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged") >= 5, again.stdout
    assert "0 chunks embedded" in again.stdout
    assert lance_versions(doc_server) == versions
    with doc_server.connect() as conn:
        assert chunks(conn) == rows

    # One changed file: only its chunks are replaced, in one commit; its surplus chunks go.
    (corpus / "guides" / "facilities.md").write_text(
        "# Facilities handbook\n\nBicycles are now kept in the new shed behind building D.\n")
    changed = run_ingest(doc_server, "--table", "docs", "--embed", corpus)
    assert changed.returncode == 0, changed.stderr
    assert "guides/facilities.md: 1 document(s), 0 unchanged" in changed.stdout, changed.stdout
    assert changed.stdout.count("unchanged —") == 4, changed.stdout
    assert lance_versions(doc_server) == versions + 1
    with doc_server.connect() as conn:
        after = chunks(conn)
    others = [r for r in rows if r["doc_id"] != "guides/facilities.md"]
    assert [r for r in after if r["doc_id"] != "guides/facilities.md"] == others
    facilities = [r for r in after if r["doc_id"] == "guides/facilities.md"]
    assert len(facilities) == 1 and "shed behind building D" in facilities[0]["text"]

    # A deleted file is kept unless --prune.
    (corpus / "licenses" / "gpl-3.txt").unlink()
    kept = run_ingest(doc_server, "--table", "docs", "--embed", corpus)
    assert kept.returncode == 0, kept.stderr
    with doc_server.connect() as conn:
        assert any(r["doc_id"] == "licenses/gpl-3.txt" for r in chunks(conn))
    pruned = run_ingest(doc_server, "--table", "docs", "--embed", "--prune", corpus)
    assert pruned.returncode == 0, pruned.stderr
    assert f"1 source(s) not given any more, {len(gpl)} chunks deleted" in pruned.stdout
    with doc_server.connect() as conn:
        left = chunks(conn)
    assert not any(r["doc_id"] == "licenses/gpl-3.txt" for r in left)
    assert len(left) == len(after) - len(gpl)


def test_csv_rows_are_documents_with_their_columns(doc_server, tmp_path):
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,notes\n"
        "1,Ada,\"Led the migration of forty services to Kubernetes, with Helm charts.\"\n"
        "2,Bo,\"Bakes sourdough bread and runs the office kitchen rota.\"\n"
        "3,Cy,\"Keeps the accounts; invoices are paid within thirty days.\"\n")
    out = run_ingest(doc_server, "--table", "people_docs", "--embed=notes", "--id-column", "id",
                     people)
    assert out.returncode == 0, out.stderr
    assert "3 document(s)" in out.stdout
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT name, doc_id, source FROM vector_search('people_docs', "
                    "'Who could handle our Kubernetes migration?', 1)")
        assert cur.fetchall() == [("Ada", "1", str(people))]
        cur.execute("SELECT doc_id, name, chunk_index, byte_start FROM people_docs "
                    "ORDER BY doc_id")
        assert cur.fetchall() == [("1", "Ada", 0, 0), ("2", "Bo", 0, 0), ("3", "Cy", 0, 0)]

    # One row changed (a copied column), one gone: one document re-embedded, one deleted.
    people.write_text(
        "id,name,notes\n"
        "1,Ada Lovelace,\"Led the migration of forty services to Kubernetes, with Helm charts.\"\n"
        "3,Cy,\"Keeps the accounts; invoices are paid within thirty days.\"\n")
    out = run_ingest(doc_server, "--table", "people_docs", "--embed=notes", "--id-column", "id",
                     people)
    assert out.returncode == 0, out.stderr
    assert "2 document(s), 1 unchanged, 1 deleted; 1 chunks embedded" in out.stdout, out.stdout
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT doc_id, name FROM people_docs ORDER BY doc_id")
        assert cur.fetchall() == [("1", "Ada Lovelace"), ("3", "Cy")]


def test_sql_changes_on_a_document_table(doc_server, tmp_path):
    """DELETE and UPDATE of copied columns work on a document table; the columns `ingest
    --embed` owns are refused; a later ingest re-adds the chunks of a deleted document."""
    import adbc_driver_manager
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,notes\n"
        "1,Ada,\"Led the migration of forty services to Kubernetes, with Helm charts.\"\n"
        "2,Bo,\"Bakes sourdough bread and runs the office kitchen rota.\"\n")
    out = run_ingest(doc_server, "--table", "crew", "--embed=notes", "--id-column", "id", people)
    assert out.returncode == 0, out.stderr
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("UPDATE crew SET name = 'Ada L.' WHERE doc_id = '1'")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [1]
        for column in ["text", "doc_id", "chunk_index", "source", "content_hash"]:
            with pytest.raises(adbc_driver_manager.Error) as e:
                cur.execute(f"UPDATE crew SET {column} = {column}")
            assert "lakehouse ingest --embed" in str(e.value), str(e.value)
        cur.execute("DELETE FROM crew WHERE name = 'Bo'")
        assert cur.fetch_arrow_table().column("count").to_pylist() == [1]
        cur.execute("SELECT name FROM vector_search('crew', 'Kubernetes migration', 5)")
        assert cur.fetchall() == [("Ada L.",)]
    out = run_ingest(doc_server, "--table", "crew", "--embed=notes", "--id-column", "id", people)
    assert out.returncode == 0, out.stderr
    with doc_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT doc_id, name FROM crew ORDER BY doc_id")
        assert cur.fetchall() == [("1", "Ada L."), ("2", "Bo")]


def test_bad_document_input_is_refused_and_nothing_is_half_written(doc_server, tmp_path,
                                                                 model_server):
    good = tmp_path / "good.md"
    good.write_text(PLANTED)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait".encode("latin-1"))
    out = run_ingest(doc_server, "--table", "docs", "--embed", good, bad)
    assert out.returncode == 1
    assert "latin1.txt" in out.stderr and "not UTF-8 text at byte 3" in out.stderr, out.stderr
    with doc_server.connect() as conn:
        assert {r["doc_id"] for r in chunks(conn)} == {str(good)}

    people = tmp_path / "people.csv"
    people.write_text("id,name\n1,Ada\n")
    out = run_ingest(doc_server, "--table", "people", "--embed", people)
    assert out.returncode == 1
    assert "people.csv" in out.stderr and "no column `text`" in out.stderr, out.stderr
    out = run_ingest(doc_server, "--table", "people", "--embed", "name", people)
    assert out.returncode == 1 and "--embed=name" in out.stderr, out.stderr

    out = run_ingest(doc_server, "--table", "docs", "--embed", "--chunk-size", 300, good)
    assert out.returncode == 1
    assert "chunked with size 1000 and overlap 200" in out.stderr, out.stderr

    out = run_ingest(doc_server, "--table", "fresh", "--embed", "--chunk-size", 100,
                     "--chunk-overlap", 100, good)
    assert out.returncode == 1 and "overlap" in out.stderr, out.stderr

    out = run_ingest(doc_server, "--table", "docs", good)
    assert out.returncode == 1 and "add --embed" in out.stderr, out.stderr

    out = run_ingest(doc_server, "--table", "people", people)  # a Parquet table
    assert out.returncode == 0, out.stderr
    out = run_ingest(doc_server, "--table", "people", "--embed", good)
    assert out.returncode == 1 and "Parquet table" in out.stderr, out.stderr
    out = run_ingest(doc_server, "--table", "docs", "--embed", "--prune", tmp_path / "nowhere")
    assert out.returncode == 1 and "nowhere" in out.stderr, out.stderr

    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n ")
    out = run_ingest(doc_server, "--table", "docs", "--embed", blank)
    assert out.returncode == 0, out.stderr
    assert "no text to embed in 1 document(s)" in out.stdout, out.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_ingest(doc_server, "--table", "docs", "--embed", empty)
    assert out.returncode == 1 and "no files to ingest" in out.stderr, out.stderr

    with doc_server.connect() as conn:
        assert {r["doc_id"] for r in chunks(conn)} == {str(good)}


def test_a_model_server_that_is_down_fails_the_ingest_cleanly(tmp_path, model_server):
    server = configured_server(tmp_path, model_server.embedding_toml(
        timeout_ms=2000, base_url=f"http://127.0.0.1:{free_port()}"))
    try:
        doc = tmp_path / "doc.md"
        doc.write_text(PLANTED)
        out = run_ingest(server, "--table", "docs", "--embed", doc)
        assert out.returncode == 1
        assert "unavailable" in out.stderr, out.stderr
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_name = 'docs'")
            assert cur.fetchall() == []
    finally:
        server.stop()
