//! In-process sentence embeddings: a BERT-family sentence-transformers model (such as
//! sentence-transformers/all-MiniLM-L6-v2) run on the CPU inside the server with candle
//! (`candle_transformers::models::bert::BertModel`), no model server needed.
//!
//! The model directory holds what a sentence-transformers checkpoint ships: `config.json`
//! (BERT: `hidden_size`, layers, heads, `layer_norm_eps`, `hidden_act`), `tokenizer.json`
//! (Hugging Face tokenizers) and `model.safetensors` (fp32 weights, with or without the
//! `bert.` prefix).
//!
//! A batch of texts is tokenized (truncated as `tokenizer.json` says — 128 tokens for
//! all-MiniLM-L6-v2 — and padded to the batch's longest text, not to the fixed length that
//! file asks for), run through the encoder with the attention mask, mean-pooled over the real
//! tokens and L2-normalised, as sentence-transformers' `Pooling(mode_mean_tokens)` +
//! `Normalize` do. The forward pass runs on a blocking thread; candle's matrix products use
//! every core (`RAYON_NUM_THREADS` limits them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

use super::EmbeddingProvider;
use crate::error::{Error, Result};

/// A sentence-transformers model loaded in memory.
pub struct LocalEmbeddingProvider {
    dir: PathBuf,
    model: Arc<BertModel>,
    tokenizer: Arc<Tokenizer>,
    dimension: usize,
}

impl std::fmt::Debug for LocalEmbeddingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbeddingProvider")
            .field("dir", &self.dir)
            .field("dimension", &self.dimension)
            .finish()
    }
}

impl LocalEmbeddingProvider {
    /// Loads the model in `dir` (reads `config.json`, `tokenizer.json` and
    /// `model.safetensors`, ~90 MB for MiniLM).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file that is missing or does not load.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = |name: &str| dir.join(name);
        let bad = |name: &str, message: String| {
            Error::Config(format!(
                "local embedding model {}: {message}; the directory needs config.json, \
                 tokenizer.json and model.safetensors of a BERT-family sentence-transformers \
                 model",
                file(name).display()
            ))
        };
        let read = |name: &str| std::fs::read(file(name)).map_err(|e| bad(name, e.to_string()));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| bad("config.json", e.to_string()))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| bad("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let weights = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )
        .map_err(|e| bad("model.safetensors", e.to_string()))?;
        let model = BertModel::load(weights, &config)
            .map_err(|e| bad("model.safetensors", e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            dimension: config.hidden_size,
        })
    }

    /// The vector dimension: the model's `hidden_size` (384 for MiniLM).
    pub fn dimension(&self) -> usize {
        self.dimension
    }
}

#[async_trait::async_trait]
impl EmbeddingProvider for LocalEmbeddingProvider {
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (model, tokenizer) = (Arc::clone(&self.model), Arc::clone(&self.tokenizer));
        let texts = texts.to_vec();
        let describe = self.describe();
        tokio::task::spawn_blocking(move || forward(&model, &tokenizer, texts))
            .await
            .map_err(|e| Error::InvalidResponse {
                provider: describe.clone(),
                message: format!("the forward pass panicked: {e}"),
            })?
            .map_err(|message| Error::InvalidResponse {
                provider: describe,
                message,
            })
    }

    fn describe(&self) -> String {
        format!("local model {}", self.dir.display())
    }
}

/// Tokenize, encode, mean-pool over the attention mask, L2-normalise: one vector per text.
fn forward(
    model: &BertModel,
    tokenizer: &Tokenizer,
    texts: Vec<String>,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let encodings = tokenizer
        .encode_batch(texts, true)
        .map_err(|e| format!("tokenizing: {e}"))?;
    let device = &model.device;
    let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> candle_core::Result<Tensor> {
        let rows = encodings
            .iter()
            .map(|e| Tensor::new(f(e), device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    };
    let pooled = (|| -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = rows(&|e| e.get_ids())?;
        let types = rows(&|e| e.get_type_ids())?;
        let mask = rows(&|e| e.get_attention_mask())?;
        // (texts, tokens, hidden)
        let hidden = model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let mean = summed.broadcast_div(&mask.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    })();
    pooled.map_err(|e| format!("the forward pass: {e}"))
}
