//! Sentence embedders behind [`metareason_core::Embedder`]:
//!
//! - [`MiniLm`]: all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions) run by
//!   candle on the CPU from the safetensors of its PyPI package, mean-pooled
//!   over the attention mask and L2-normalised, as sentence-transformers does;
//! - [`HashingEmbedder`]: hashed word unigrams and bigrams, for tests and
//!   for a machine with neither the MiniLM files nor a language model that
//!   can embed (the llama.cpp backend offers its own embedder as the usual
//!   fallback).
#![deny(missing_docs)]

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use metareason_core::embed::normalize;
use metareason_core::{EmbedError, Embedder};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// Longest input in tokens (all-MiniLM-L6-v2 was trained on 256).
const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
const BATCH: usize = 32;

/// all-MiniLM-L6-v2 on the CPU.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
}

impl MiniLm {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `dir` (as `metareason models fetch all-minilm-l6-v2` lays them out).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(EmbedError(format!(
                    "{} is missing; run `metareason models fetch all-minilm-l6-v2`",
                    p.display()
                )))
            }
        };
        let config_text = std::fs::read_to_string(file("config.json")?)
            .map_err(|e| EmbedError(format!("{}: {e}", dir.join("config.json").display())))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| {
            EmbedError(format!(
                "{}: not a BERT config: {e}",
                dir.join("config.json").display()
            ))
        })?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?).map_err(|e| {
            EmbedError(format!(
                "{}: not a tokenizer: {e}",
                dir.join("tokenizer.json").display()
            ))
        })?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EmbedError(e.to_string()))?;
        let device = Device::Cpu;
        let weights = file("model.safetensors")?;
        // SAFETY: the file is memory-mapped read-only; the store never
        // rewrites a verified model file in place (updates are renames).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| EmbedError(format!("{}: {e}", weights.display())))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| EmbedError(format!("{}: {e}", weights.display())))?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
        })
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let err = |e: candle_core::Error| EmbedError(e.to_string());
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError(e.to_string()))?;
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let rows = encodings.len();
        let mut ids = Vec::with_capacity(rows * len);
        let mut types = Vec::with_capacity(rows * len);
        let mut mask = Vec::with_capacity(rows * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, len), &self.device).map_err(err)?;
        let types = Tensor::from_vec(types, (rows, len), &self.device).map_err(err)?;
        let mask = Tensor::from_vec(mask, (rows, len), &self.device).map_err(err)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(err)?;
        // Mean over the tokens the mask keeps.
        let m = mask
            .to_dtype(DType::F32)
            .map_err(err)?
            .unsqueeze(2)
            .map_err(err)?;
        let summed = hidden.broadcast_mul(&m).map_err(err)?.sum(1).map_err(err)?;
        let counts = m
            .sum(1)
            .map_err(err)?
            .clamp(1e-9f32, f32::MAX)
            .map_err(err)?;
        let pooled = summed.broadcast_div(&counts).map_err(err)?;
        let mut out: Vec<Vec<f32>> = pooled.to_vec2().map_err(err)?;
        out.iter_mut().for_each(|v| normalize(v));
        Ok(out)
    }
}

impl Embedder for MiniLm {
    fn name(&self) -> &str {
        "all-minilm-l6-v2"
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Batches of similar length: a batch is padded to its longest text,
        // so one long text among short ones would multiply their cost.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// Hashed bag of lower-cased word unigrams and bigrams (signed feature
/// hashing, FNV-1a), L2-normalised. Lexical, not semantic: similar wording
/// gives similar vectors.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
    name: String,
}

impl HashingEmbedder {
    /// An embedder of `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self {
            dim: dim.max(1),
            name: format!("hashing-{dim}"),
        }
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(256)
    }
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x20;
            h = h.wrapping_mul(0x100000001b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

impl Embedder for HashingEmbedder {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let lower = t.to_lowercase();
                let words: Vec<&str> = lower
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .collect();
                let mut v = vec![0f32; self.dim];
                let mut add = |parts: &[&str], w: f32| {
                    let h = fnv1a(parts);
                    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
                    v[(h % self.dim as u64) as usize] += sign * w;
                };
                for w in &words {
                    add(&[w], 1.0);
                }
                for pair in words.windows(2) {
                    add(pair, 0.5);
                }
                normalize(&mut v);
                v
            })
            .collect())
    }
}
