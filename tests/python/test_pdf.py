"""PDF documents in `lakehouse ingest --embed`: real PDFs from a Debian documentation package
(graphviz-doc's manual pages), a planted fact found by `vector_search` with its page, and an
encrypted PDF (qpdf), an image-only PDF (img2pdf) and a truncated one reported by name and
skipped while the other files are ingested; a document table made before PDF support refuses
PDFs."""

import glob
import gzip
import shutil
import subprocess

import pytest
from fpdf import FPDF

from conftest import configured_server
from test_documents import run_ingest
from test_local_embeddings import local_toml, minilm  # noqa: F401 (fixture)

GRAPHVIZ_PDFS = "/usr/share/doc/graphviz/pdf"  # Debian graphviz-doc
LOGO = "/usr/share/pixmaps/debian-logo.png"  # Debian debconf (essential)

PAGES = [
    "Facilities handbook. This handbook describes the buildings of the campus, the canteen "
    "opening hours and the rules for meeting rooms.",
    "Bicycles. The bicycle cellar under building C is unlocked from seven in the morning until "
    "eight in the evening. Employees keep their bicycles in the cellar, never in the corridors.",
    "Parking. Visitors park in the north lot; the barrier opens with the code printed on the "
    "badge.",
]


def handbook(path):
    """A three-page PDF (fpdf2, core Helvetica) with the bicycle rule on page 2."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def real_pdfs(dest):
    """graphviz-doc's PDF manual pages (dot, neato, gvpr), gunzipped."""
    out = []
    for name in ["dot.1", "neato.1", "gvpr.1"]:
        target = dest / f"{name}.pdf"
        with gzip.open(f"{GRAPHVIZ_PDFS}/{name}.pdf.gz") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        out.append(target)
    return out


@pytest.fixture
def server(tmp_path, minilm):  # noqa: F811
    server = configured_server(tmp_path, local_toml(minilm))
    yield server
    server.stop()


def test_real_and_planted_pdfs_are_ingested_with_pages_and_bad_ones_skipped(server, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    real = real_pdfs(corpus)
    planted = handbook(corpus / "handbook.pdf")
    subprocess.run(["qpdf", "--encrypt", "user-pw", "owner-pw", "256", "--", str(planted),
                    str(corpus / "locked.pdf")], check=True)
    subprocess.run(["img2pdf", LOGO, "-o", str(corpus / "scan.pdf")], check=True)
    whole = real[0].read_bytes()
    (corpus / "truncated.pdf").write_bytes(whole[: len(whole) // 3])

    result = run_ingest(server, "--table", "docs", "--embed", corpus)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("error: ") and ".pdf: " in line]
    assert len(errors) == 3, result.stderr
    assert any("locked.pdf" in e and "encrypted" in e for e in errors), errors
    assert any("scan.pdf" in e and "no text" in e and "OCR" in e for e in errors), errors
    assert any("truncated.pdf" in e and "cannot read the PDF" in e for e in errors), errors
    assert "3 of 7 files were not ingested" in result.stderr

    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT source, count(*), min(page), max(page) FROM docs "
                    "GROUP BY source ORDER BY source")
        stored = {s: (n, lo, hi) for s, n, lo, hi in cur.fetchall()}
        assert set(stored) == {"dot.1.pdf", "neato.1.pdf", "gvpr.1.pdf", "handbook.pdf"}
        assert stored["handbook.pdf"] == (3, 1, 3), stored
        for name in ["dot.1.pdf", "gvpr.1.pdf"]:
            assert stored[name][2] > 1, f"{name} has several pages: {stored[name]}"
        cur.execute("SELECT text, page FROM vector_search('docs', "
                    "'Where do employees keep their bicycles?', 1)")
        text, page = cur.fetchone()
        assert "bicycle cellar" in text and page == 2
        # Offsets are into the page's extracted text (each page holds one short chunk, after
        # the blank lines the extractor puts first).
        cur.execute("SELECT text, byte_start, byte_end FROM docs WHERE source = 'handbook.pdf' "
                    "ORDER BY page")
        for text, start, end in cur.fetchall():
            assert 0 <= start < 8 and end - start == len(text.encode()) > 0, (start, end, text)
        cur.execute("SELECT text FROM vector_search('docs', "
                    "'which layout program draws directed graphs in layers?', 5)")
        assert any("dot" in t for (t,) in cur.fetchall())

    # Re-ingesting the directory changes nothing stored; a text file gets a NULL page.
    again = run_ingest(server, "--table", "docs", "--embed", corpus)
    assert again.returncode == 1 and "3 of 7 files were not ingested" in again.stderr
    assert "4 documents (4 unchanged" in again.stdout, again.stdout
    note = tmp_path / "note.txt"
    note.write_text("The canteen serves soup on Fridays.")
    assert run_ingest(server, "--table", "docs", "--embed", note).returncode == 0
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT page FROM docs WHERE source LIKE '%note.txt'")
        assert cur.fetchall() == [(None,)]


def test_a_table_without_a_page_column_refuses_pdfs(server, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("The canteen serves soup on Fridays.")
    assert run_ingest(server, "--table", "docs", "--embed", note).returncode == 0
    # A document table as made before PDF support: the same columns less `page`.
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE old_docs STORED AS LANCE AS SELECT doc_id, chunk_index, text, "
                    "source, byte_start, byte_end, content_hash, embedding FROM docs")
    pdf = handbook(tmp_path / "handbook.pdf")
    result = run_ingest(server, "--table", "old_docs", "--embed", pdf)
    assert result.returncode == 1
    if "not a document table" in result.stderr:
        pytest.skip("CREATE TABLE AS does not keep the chunk settings metadata")
    assert "handbook.pdf" in result.stderr and "has no page column" in result.stderr
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM old_docs")
        assert cur.fetchone()[0] == 1


def test_graphviz_doc_ships_the_pdfs():
    assert glob.glob(f"{GRAPHVIZ_PDFS}/dot.1.pdf.gz"), "scripts/setup.sh installs graphviz-doc"
