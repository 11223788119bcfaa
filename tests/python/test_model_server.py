"""The test model server is the real MiniLM: its vectors (GGUF conversion, llama.cpp, served as
Ollama's /api/embed) equal a NumPy reference forward pass over the original safetensors."""

import os
import subprocess

from conftest import MODEL_SCRIPTS


def test_served_vectors_match_the_numpy_reference(model_server):
    python = os.path.expanduser("~/.cache/lakehouse/venv-gguf/bin/python")
    check = subprocess.run(
        [python, str(MODEL_SCRIPTS / "reference_minilm.py"),
         f"{model_server.models}/all-MiniLM-L6-v2", model_server.url,
         "The cat sits on the mat", "Kubernetes migration with Helm charts and GitOps",
         "Ünïcode façade, naïve café", "a"],
        capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "max cosine gap" in check.stdout
