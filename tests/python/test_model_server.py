"""The test model server is the real MiniLM: its vectors (GGUF conversion, llama.cpp, served as
Ollama's /api/embed) equal a NumPy reference forward pass over the original safetensors."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "model-server"


def test_served_vectors_match_the_numpy_reference(tmp_path):
    models = subprocess.run([str(SCRIPTS / "setup.sh")], capture_output=True, text=True,
                            check=True, timeout=900).stdout.strip()
    server = subprocess.Popen(
        ["node", str(SCRIPTS / "server.mjs"), "--port", "0", "--exit-with-parent",
         "--embed", f"all-minilm={models}/minilm.gguf"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("listening on "), line
        url = line.removeprefix("listening on ").strip()
        python = os.path.expanduser("~/.cache/lakehouse/venv-gguf/bin/python")
        check = subprocess.run(
            [python, str(SCRIPTS / "reference_minilm.py"), f"{models}/all-MiniLM-L6-v2", url,
             "The cat sits on the mat", "Kubernetes migration with Helm charts and GitOps",
             "Ünïcode façade, naïve café", "a"],
            capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "max cosine gap" in check.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
