//! A decoder/encoder Transformer (Vaswani et al. 2017), pre-norm as in GPT-2 and
//! Llama or post-norm as in BERT (`norm_placement`). The same weights run bidirectionally for masked
//! fill-in-the-blank (BERT, Devlin et al. 2019) and causally for generation.
//! Inference state lives in [`KvCache`], never in the weights (llama2.c's split).

use plinth_layers::{linear, Attention, AttentionDims, AttentionMode, AttnContext, LayerKv, Mlp, Norm, Rotary};
use tch::{nn, nn::Module, Kind, Tensor};

use crate::{ModelConfig, ModelError, NormPlacement, PositionKind, Result};

#[derive(Debug)]
struct Block {
    attn_norm: Norm,
    attn: Attention,
    mlp_norm: Norm,
    mlp: Mlp,
    placement: NormPlacement,
}

impl Block {
    fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let dims = AttentionDims {
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
            bias: cfg.bias,
        };
        Block {
            attn_norm: Norm::new(&p / "attn_norm", cfg.norm, cfg.d_model, cfg.norm_eps),
            attn: Attention::new(&p / "attn", dims),
            mlp_norm: Norm::new(&p / "mlp_norm", cfg.norm, cfg.d_model, cfg.norm_eps),
            mlp: Mlp::new(&p / "mlp", cfg.mlp, cfg.d_model, cfg.d_ff, cfg.bias),
            placement: cfg.norm_placement,
        }
    }

    fn forward(&self, x: &Tensor, kv: Option<&mut LayerKv>, ctx: &AttnContext<'_>) -> Tensor {
        match self.placement {
            NormPlacement::Pre => {
                let x = x + self.attn.forward(&self.attn_norm.forward(x), kv, ctx); // (B, T, C)
                &x + self.mlp.forward_lora(&self.mlp_norm.forward(&x), ctx.lora)
                // (B, T, C)
            }
            NormPlacement::Post => {
                let x = self.attn_norm.forward(&(x + self.attn.forward(x, kv, ctx))); // (B, T, C)
                self.mlp_norm.forward(&(&x + self.mlp.forward_lora(&x, ctx.lora)))
                // (B, T, C)
            }
        }
    }
}

/// How to run the model beyond the token ids.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOptions<'a> {
    pub mode: AttentionMode,
    /// A LoRA adapter applied on top of the base weights.
    pub adapter: Option<&'a crate::lora::LoraAdapter>,
    /// (B, T) bool, true for real tokens, for right-padded batches: padded
    /// positions are never attended to (their own outputs are meaningless).
    pub padding: Option<&'a Tensor>,
}

impl ForwardOptions<'_> {
    pub fn new(mode: AttentionMode) -> Self {
        ForwardOptions { mode, adapter: None, padding: None }
    }
}

/// Keys and values of every layer for one batch of sequences being decoded.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: i64,
    capacity: i64,
    batch: i64,
}

impl KvCache {
    /// Number of positions already cached.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every cached position, keeping the buffers.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// BERT's masked-LM transform before the output projection: dense, GELU, norm.
#[derive(Debug)]
struct HeadTransform {
    dense: nn::Linear,
    norm: Norm,
}

/// The base model. Parameter paths are checkpoint keys:
/// `embed.weight`, `pos_embed.weight`, `type_embed.weight`,
/// `blocks.{i}.attn.q_proj.weight`, ..., `norm.weight` (after the last block when
/// pre-norm, on the embeddings when post-norm), `lm_head.weight` (untied only),
/// `head.dense.*`, `head.norm.*` and `head.bias` (BERT's output head).
#[derive(Debug)]
pub struct Transformer {
    cfg: ModelConfig,
    embed: nn::Embedding,
    pos_embed: Option<nn::Embedding>,
    type_embed: Option<nn::Embedding>,
    rotary: Option<Rotary>,
    blocks: Vec<Block>,
    norm: Norm,
    head_transform: Option<HeadTransform>,
    lm_head: Option<nn::Linear>,
    head_bias: Option<Tensor>,
}

impl Transformer {
    /// Creates the parameters under `p` with fresh initialisation.
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Result<Self> {
        cfg.validate()?;
        let emb_cfg = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        let embed = nn::embedding(p / "embed", cfg.vocab_size, cfg.d_model, emb_cfg);
        let (pos_embed, rotary) = match cfg.position {
            PositionKind::Learned => {
                (Some(nn::embedding(p / "pos_embed", cfg.position_rows(), cfg.d_model, emb_cfg)), None)
            }
            PositionKind::Rotary => {
                (None, Some(Rotary::new(cfg.head_dim(), cfg.max_seq_len, cfg.rope_theta, p.device())))
            }
        };
        let type_embed = (cfg.type_vocab_size > 0)
            .then(|| nn::embedding(p / "type_embed", cfg.type_vocab_size, cfg.d_model, emb_cfg));
        let blocks = (0..cfg.n_layers).map(|i| Block::new(p / "blocks" / i, cfg)).collect();
        let norm = Norm::new(p / "norm", cfg.norm, cfg.d_model, cfg.norm_eps);
        let head_transform = cfg.head_transform.then(|| HeadTransform {
            dense: linear(p / "head" / "dense", cfg.d_model, cfg.d_model, cfg.bias),
            norm: Norm::new(p / "head" / "norm", cfg.norm, cfg.d_model, cfg.norm_eps),
        });
        let lm_head = (!cfg.tie_embeddings).then(|| linear(p / "lm_head", cfg.d_model, cfg.vocab_size, false));
        let head_bias = cfg.head_bias.then(|| (p / "head").zeros("bias", &[cfg.vocab_size]));
        Ok(Transformer {
            cfg: cfg.clone(),
            embed,
            pos_embed,
            type_embed,
            rotary,
            blocks,
            norm,
            head_transform,
            lm_head,
            head_bias,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> tch::Device {
        self.embed.ws.device()
    }

    /// A cache for `batch` sequences of up to `max_seq_len` tokens.
    pub fn new_cache(&self, batch: i64) -> KvCache {
        let c = &self.cfg;
        let device = self.embed.ws.device();
        let kind = self.embed.ws.kind();
        let layers = (0..c.n_layers)
            .map(|_| LayerKv::new(batch, c.kv_heads(), c.max_seq_len, c.head_dim(), kind, device))
            .collect();
        KvCache { layers, len: 0, capacity: c.max_seq_len, batch }
    }

    /// Final-normed hidden states (B, T, C) for token ids (B, T).
    ///
    /// With a cache, `ids` continue the cached sequence and the cache grows by T.
    pub fn hidden(&self, ids: &Tensor, mode: AttentionMode, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.hidden_with(ids, cache, &ForwardOptions::new(mode))
    }

    /// [`Transformer::hidden`] with options: a LoRA adapter applied on top of the
    /// (unchanged) base weights, and a padding mask for batches of unequal lengths.
    pub fn hidden_with(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        opts: &ForwardOptions<'_>,
    ) -> Result<Tensor> {
        let ForwardOptions { mode, adapter, padding } = *opts;
        if let Some(a) = adapter {
            if a.n_layers() != self.blocks.len() {
                return Err(ModelError::Input(format!(
                    "the adapter has {} layers but the model has {}",
                    a.n_layers(),
                    self.blocks.len()
                )));
            }
        }
        let (b, t) = ids
            .size2()
            .map_err(|_| ModelError::Input(format!("token ids must have shape (batch, time), got {:?}", ids.size())))?;
        if ids.kind() != Kind::Int64 {
            return Err(ModelError::Input(format!("token ids must be int64, got {:?}", ids.kind())));
        }
        if let Some(rows) = adapter.and_then(|a| a.rows()) {
            if rows != b {
                return Err(ModelError::Input(format!(
                    "the per-row adapter mix was built for {rows} rows but the batch has {b}"
                )));
            }
        }
        let offset = cache.as_ref().map_or(0, |c| c.len);
        if let Some(c) = cache.as_ref() {
            if c.batch != b {
                return Err(ModelError::Input(format!("cache holds {} sequences but {b} were given", c.batch)));
            }
        }
        let capacity = cache.as_ref().map_or(self.cfg.max_seq_len, |c| c.capacity);
        if t == 0 || offset + t > capacity {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens does not fit the context of {} tokens (max_seq_len); shorten the input",
                offset + t,
                capacity
            )));
        }
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= self.cfg.vocab_size {
            return Err(ModelError::Input(format!(
                "token id {} is outside the vocabulary of {} tokens",
                if lo < 0 { lo } else { hi },
                self.cfg.vocab_size
            )));
        }
        if let Some(p) = padding {
            if p.size() != [b, offset + t] || p.kind() != Kind::Bool {
                return Err(ModelError::Input(format!(
                    "the padding mask must be bool of shape [{b}, {}] (true for real tokens), got {:?} {:?}",
                    offset + t,
                    p.kind(),
                    p.size()
                )));
            }
        }
        let mut x = self.embed.forward(ids); // (B, T, C)
        if let Some(pos) = &self.pos_embed {
            let first = offset + self.cfg.position_offset;
            let positions = Tensor::arange_start(first, first + t, (Kind::Int64, ids.device()));
            x = x.g_add(&pos.forward(&positions).unsqueeze(0)); // (B, T, C), not in place: autograd tracks x
        }
        if let Some(types) = &self.type_embed {
            x = x.g_add(&types.ws.get(0)); // (B, T, C): every token is in segment 0
        }
        if self.cfg.norm_placement == NormPlacement::Post {
            x = self.norm.forward(&x);
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let kv = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let ctx = AttnContext {
                rotary: self.rotary.as_ref(),
                mode,
                offset,
                lora: adapter.map(|a| a.block(i)),
                key_valid: padding,
            };
            x = block.forward(&x, kv, &ctx);
        }
        if let Some(c) = cache {
            c.len += t;
        }
        Ok(match self.cfg.norm_placement {
            NormPlacement::Pre => self.norm.forward(&x),
            NormPlacement::Post => x,
        })
    }

    /// Projects hidden states (..., C) onto the vocabulary (..., V).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let transformed;
        let hidden = match &self.head_transform {
            Some(h) => {
                transformed = h.norm.forward(&plinth_layers::apply_linear(&h.dense, hidden).gelu("none")); // (..., C)
                &transformed
            }
            None => hidden,
        };
        let weight = self.lm_head.as_ref().map_or(&self.embed.ws, |h| &h.ws); // (V, C)
        plinth_layers::kernels::linear(hidden, weight, self.head_bias.as_ref())
    }

    /// Logits (B, T, V) for token ids (B, T).
    pub fn forward(&self, ids: &Tensor, mode: AttentionMode, cache: Option<&mut KvCache>) -> Result<Tensor> {
        Ok(self.logits(&self.hidden(ids, mode, cache)?))
    }

    /// Logits (B, T, V) with [`ForwardOptions`].
    pub fn forward_with(&self, ids: &Tensor, cache: Option<&mut KvCache>, opts: &ForwardOptions<'_>) -> Result<Tensor> {
        Ok(self.logits(&self.hidden_with(ids, cache, opts)?))
    }
}
