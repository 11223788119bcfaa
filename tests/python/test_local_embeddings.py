"""`provider = "local"`: MiniLM (the PyPI wheel's safetensors) run inside the server with candle.
Its vectors equal the NumPy reference forward pass (scripts/model-server/reference_minilm.py)
on 100 real texts; documents are ingested and searched by text with no model server configured;
bad model directories and dimensions are refused at start and by `lakehouse doctor`."""

import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import BIN, MODEL_SCRIPTS, configured_server
from test_documents import PLANTED, run_ingest

ROOT = Path(__file__).resolve().parents[2]
APACHE = "/usr/share/common-licenses/Apache-2.0"  # Debian base-files


@pytest.fixture(scope="module")
def minilm():
    """The MiniLM model directory (scripts/models.sh fetches it once)."""
    result = subprocess.run([str(ROOT / "scripts" / "models.sh")], capture_output=True,
                            text=True, timeout=600, check=True)
    return result.stdout.strip()


def local_toml(path, name="minilm", extra=""):
    return (f'[embedding]\ndefault_model = "{name}"\n[embedding.models.{name}]\n'
            f'provider = "local"\npath = "{path}"\n{extra}')


@pytest.fixture
def local_server(tmp_path, minilm):
    server = configured_server(tmp_path, local_toml(minilm))
    yield server
    server.stop()


def texts():
    """100 texts: lines of the Apache License, a text longer than MiniLM's 128 tokens, Unicode,
    one letter, repeated words."""
    lines = [line.strip() for line in open(APACHE) if len(line.strip()) > 20]
    special = ["a", "Ünïcode façade, naïve café — 東京の天気", " ".join(lines[:12]),
               "data data data data data", "SELECT count(*) FROM lineitem WHERE l_tax > 0.02"]
    return special + lines[:100 - len(special)]


def test_in_process_vectors_equal_the_numpy_reference(local_server, minilm, tmp_path):
    given = texts()
    assert len(given) == 100
    with local_server.connect() as conn, conn.cursor() as cur:
        cur.adbc_ingest("texts", pa.table({"id": list(range(100)), "body": given}),
                        mode="create")
        cur.execute("SELECT id, embed(body) FROM texts ORDER BY id")
        rows = cur.fetchall()
    vectors = [list(map(float, v)) for _, v in rows]
    assert all(len(v) == 384 for v in vectors)
    dump = tmp_path / "vectors.json"
    dump.write_text(json.dumps({"texts": given, "vectors": vectors}))
    python = os.path.expanduser("~/.cache/lakehouse/venv-gguf/bin/python")
    check = subprocess.run([python, str(MODEL_SCRIPTS / "reference_minilm.py"), minilm,
                            str(dump), "--max-gap", "1e-4"],
                           capture_output=True, text=True, timeout=900)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "over 100 texts" in check.stdout


def test_documents_are_ingested_and_searched_by_text_with_no_model_server(local_server,
                                                                          tmp_path):
    handbook = tmp_path / "facilities.md"
    handbook.write_text(PLANTED)
    for path in (ROOT / "README.md", handbook):
        result = run_ingest(local_server, "--table", "docs", "--embed", path)
        assert result.returncode == 0, result.stderr
    with local_server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT source, text FROM vector_search('docs', "
                    "'Where do employees keep their bicycles?', 1)")
        source, text = cur.fetchone()
        assert source.endswith("facilities.md") and "bicycle cellar" in text
        cur.execute("SELECT source, text FROM vector_search('docs', "
                    "'which command runs the whole test suite?', 3)")
        found = cur.fetchall()
        assert any(s.endswith("README.md") and "scripts/test.sh" in t for s, t in found), found
        cur.execute("SELECT vector_columns FROM lakehouse_tables() WHERE table_name = 'docs'")
        assert cur.fetchone()[0] == "embedding(384, cosine, minilm)"


def test_bad_local_models_are_refused_at_start_and_by_doctor(tmp_path, minilm):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    cases = [
        (local_toml(tmp_path / "nowhere"), "nowhere/config.json"),
        (local_toml(broken), "broken-model/config.json"),
        (local_toml(minilm, extra="dimension = 768\n"),
         "dimension = 768, but the model in"),
        ('[embedding.models.m]\nprovider = "local"\n', "provider local needs path"),
        ('[embedding.models.m]\nprovider = "ollama"\nbase_url = "http://x:1"\nmodel = "m"\n'
         f'dimension = 3\npath = "{minilm}"\n', "path is for provider local"),
    ]
    for n, (toml, message) in enumerate(cases):
        case = tmp_path / f"case{n}"
        case.mkdir()
        config = case / "lakehouse.toml"
        config.write_text(toml)
        with pytest.raises(RuntimeError, match="server exited early") as failed:
            configured_server(case, toml)
        assert message in str(failed.value), (message, str(failed.value))
        doctor = subprocess.run([BIN, "doctor", "--config", str(config), "--storage",
                                 str(case / "data"), "--listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=300)
        assert doctor.returncode == 1 and message in doctor.stdout + doctor.stderr, \
            doctor.stdout + doctor.stderr


def test_doctor_embeds_with_the_local_model(tmp_path, minilm):
    config = tmp_path / "lakehouse.toml"
    config.write_text(local_toml(minilm))
    doctor = subprocess.run([BIN, "doctor", "--config", str(config), "--storage",
                             str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "minilm" in doctor.stdout and "384" in doctor.stdout, doctor.stdout
