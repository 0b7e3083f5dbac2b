//! Transformer building blocks on tch. Layers know no model names: a model crate
//! composes them, and the `nn::Path` a layer is built under is its checkpoint key.
//!
//! Conventions follow Llama (Touvron et al. 2023, and Hugging Face's
//! `modeling_llama.py` for the rotate-half rotary layout) so that a plinth model can
//! later be mapped onto Llama and BERT checkpoints without reordering weights.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

pub mod kernels;

/// Which normalisation a block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// Root-mean-square norm with a learned scale (Llama).
    RmsNorm,
    /// Layer norm with learned scale and shift (BERT, GPT-2).
    LayerNorm,
}

/// The feed-forward block's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    /// `down(silu(gate(x)) * up(x))` (Llama).
    SwiGlu,
    /// `down(gelu(up(x)))` (BERT, GPT-2).
    Gelu,
}

/// How attention sees the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    /// Every position sees every other (masked fill-in-the-blank).
    Bidirectional,
    /// A position sees itself and earlier positions only (next-token prediction).
    Causal,
}

/// A normalisation layer; parameters live at `weight` (and `bias` for layer norm).
#[derive(Debug)]
pub struct Norm {
    kind: NormKind,
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
    dim: i64,
}

impl Norm {
    pub fn new(p: nn::Path, kind: NormKind, dim: i64, eps: f64) -> Self {
        let weight = p.ones("weight", &[dim]);
        let bias = match kind {
            NormKind::RmsNorm => None,
            NormKind::LayerNorm => Some(p.zeros("bias", &[dim])),
        };
        Norm { kind, weight, bias, eps, dim }
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.kind {
            NormKind::RmsNorm if kernels::applies(x) => kernels::rms_norm(x, &self.weight, self.eps),
            NormKind::RmsNorm => rms_norm_composed(x, &self.weight, self.eps),
            NormKind::LayerNorm => x.layer_norm([self.dim], Some(&self.weight), self.bias.as_ref(), self.eps, true),
        }
    }
}

/// RMSNorm from ATen ops, for what the fused kernel does not take (other devices
/// and dtypes): libtorch's fused layer-norm kernel on `[x, -x]`, which has mean
/// exactly zero and variance mean(x²), so layer-normalising it divides by rms(x).
/// ATen's own `rms_norm` is a chain of six elementwise kernels on CPU; this is
/// three and measured about 3x faster forward and backward.
pub fn rms_norm_composed(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let dim = weight.size()[0];
    let doubled = Tensor::cat(&[x, &x.neg()], -1); // (..., 2C)
    let weight = Tensor::cat(&[weight, weight], 0); // (2C,)
    doubled.layer_norm([2 * dim], Some(&weight), None, eps, true).narrow(-1, 0, dim)
    // (..., C)
}

/// `silu(g) * u` for `gu = [g | u]` (..., 2F) from ATen ops -> (..., F).
pub fn swiglu_composed(gu: &Tensor) -> Tensor {
    let f = gu.size().last().copied().unwrap_or(0) / 2;
    gu.narrow(-1, 0, f).silu() * gu.narrow(-1, f, f)
}

/// A linear map `y = x Wᵀ (+ b)` with GPT-style N(0, 0.02) initialisation.
pub fn linear(p: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        bs_init: Some(nn::Init::Const(0.0)),
        bias,
    };
    nn::linear(p, in_dim, out_dim, cfg)
}

/// Inputs with fewer rows than this (batch-1 decoding) run their projections one
/// GEMM each, on ATen, and the composed ops instead of the fused CPU kernels.
pub const FUSE_MIN_ROWS: i64 = 32;

/// Applies several linear maps that read the same input; one output per map.
///
/// With at least [`FUSE_MIN_ROWS`] input rows (training batches, prefills) they run
/// as one matmul over the concatenated weights: one wide GEMM instead of several
/// narrow ones, and backward sums no per-projection input gradients, while the
/// concatenation's copy (one pass over the weights) costs at most 1/32 of the GEMM.
/// With fewer rows (batch-1 decoding) that copy would dominate, so each projection
/// runs its own GEMM. The parameters stay separate either way (their paths are
/// checkpoint keys).
pub fn fused_linear(x: &Tensor, layers: &[&nn::Linear]) -> Vec<Tensor> {
    if rows(x) < FUSE_MIN_ROWS {
        return layers.iter().map(|l| apply_linear(l, x)).collect();
    }
    let sizes: Vec<i64> = layers.iter().map(|l| l.ws.size()[0]).collect();
    concat_linear(x, layers).split_with_sizes(sizes.as_slice(), -1) // (..., O_i) each
}

/// The maps' outputs side by side, (..., ΣO), from one GEMM over their
/// concatenated weights (and biases, when every map has one).
pub fn concat_linear(x: &Tensor, layers: &[&nn::Linear]) -> Tensor {
    let w = Tensor::cat(&layers.iter().map(|l| &l.ws).collect::<Vec<_>>(), 0); // (ΣO, C)
    let biases: Vec<&Tensor> = layers.iter().filter_map(|l| l.bs.as_ref()).collect();
    let b = (biases.len() == layers.len()).then(|| Tensor::cat(&biases, 0)); // (ΣO,)
    kernels::linear(x, &w, b.as_ref()) // (..., ΣO)
}

/// A linear layer's map through [`kernels::linear`] (oneDNN GEMMs on the CPU).
pub fn apply_linear(l: &nn::Linear, x: &Tensor) -> Tensor {
    kernels::linear(x, &l.ws, l.bs.as_ref())
}

/// How many rows `x` (..., C) has.
pub(crate) fn rows(x: &Tensor) -> i64 {
    x.numel() as i64 / x.size().last().copied().unwrap_or(1).max(1)
}

/// A LoRA update (Hu et al. 2021) for one projection: `Δy = scale · B A dropout(x)`
/// with `A` (r, in) random and `B` (out, r) zero when created, so attaching an
/// adapter changes nothing until it is trained.
///
/// A pair may also hold one update per batch row: `A` (B, r, in) and `B` (B, out, r)
/// apply row b's own update to row b of an input (B, T, in) through batched matmuls.
#[derive(Debug)]
pub struct LoraPair {
    pub a: Tensor, // (r, in), or (B, r, in) per row
    pub b: Tensor, // (out, r), or (B, out, r) per row
    pub scale: f64,
    pub dropout: f64,
}

impl LoraPair {
    /// The update for input `x` (..., in) -> (..., out); dropout only when training.
    /// The scale multiplies the narrow (..., r) intermediate, not the output, and a
    /// shared pair's two products run through [`kernels::linear`] like the base's.
    pub fn delta(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        if self.a.dim() == 2 {
            let h = kernels::linear(&x, &self.a, None) * self.scale; // (..., r)
            kernels::linear(&h, &self.b, None) // (..., out)
        } else {
            (x.matmul(&self.a.transpose(-1, -2)) * self.scale).matmul(&self.b.transpose(-1, -2))
            // (..., out)
        }
    }

    /// The update as a weight, `scale · B A` (out, in), for merging into the base.
    pub fn weight_delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}

/// LoRA updates for the projections of one block; `None` leaves a projection as is.
#[derive(Debug, Default)]
pub struct BlockLora {
    pub q_proj: Option<LoraPair>,
    pub k_proj: Option<LoraPair>,
    pub v_proj: Option<LoraPair>,
    pub o_proj: Option<LoraPair>,
    pub gate_proj: Option<LoraPair>,
    pub up_proj: Option<LoraPair>,
    pub down_proj: Option<LoraPair>,
    /// Training mode (dropout on); set by the adapter's owner.
    pub train: bool,
}

impl BlockLora {
    /// The projections an adapter can target, by their path inside a block.
    pub const PROJECTIONS: [&'static str; 7] =
        ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    /// The update slot of a projection named in [`BlockLora::PROJECTIONS`].
    pub fn slot(&self, name: &str) -> Option<&Option<LoraPair>> {
        Some(match name {
            "attn.q_proj" => &self.q_proj,
            "attn.k_proj" => &self.k_proj,
            "attn.v_proj" => &self.v_proj,
            "attn.o_proj" => &self.o_proj,
            "mlp.gate_proj" => &self.gate_proj,
            "mlp.up_proj" => &self.up_proj,
            "mlp.down_proj" => &self.down_proj,
            _ => return None,
        })
    }

    /// Mutable access to the slot of a projection named in [`BlockLora::PROJECTIONS`].
    pub fn slot_mut(&mut self, name: &str) -> Option<&mut Option<LoraPair>> {
        Some(match name {
            "attn.q_proj" => &mut self.q_proj,
            "attn.k_proj" => &mut self.k_proj,
            "attn.v_proj" => &mut self.v_proj,
            "attn.o_proj" => &mut self.o_proj,
            "mlp.gate_proj" => &mut self.gate_proj,
            "mlp.up_proj" => &mut self.up_proj,
            "mlp.down_proj" => &mut self.down_proj,
            _ => return None,
        })
    }
}

/// Selects one projection's update slot from a block's LoRA updates.
type Pick = fn(&BlockLora) -> &Option<LoraPair>;

/// `y` plus the LoRA update `pick` selects from `lora`, if there is one.
fn adapt(y: Tensor, x: &Tensor, lora: Option<&BlockLora>, pick: Pick) -> Tensor {
    match lora.and_then(|l| pick(l).as_ref().map(|p| (p, l.train))) {
        Some((pair, train)) => y + pair.delta(x, train),
        None => y,
    }
}

/// The concatenated output of projections that read `x`, `y` (..., ΣO), plus each
/// one's LoRA update from `lora` in its own columns (zeros where a projection has
/// none): what [`adapt`] does per projection, on the fused GEMM's output, so that
/// the fused kernels after it see one tensor.
fn adapt_concat(y: Tensor, x: &Tensor, lora: Option<&BlockLora>, picks: &[(Pick, i64)]) -> Tensor {
    let Some(l) = lora.filter(|l| picks.iter().any(|(pick, _)| pick(l).is_some())) else {
        return y;
    };
    let mut shape = x.size();
    let deltas: Vec<Tensor> = picks
        .iter()
        .map(|&(pick, width)| match pick(l) {
            Some(pair) => pair.delta(x, l.train),
            None => {
                *shape.last_mut().expect("x has a last dimension") = width;
                Tensor::zeros(shape.as_slice(), (y.kind(), y.device()))
            }
        })
        .collect();
    y + Tensor::cat(&deltas, -1) // (..., ΣO)
}

/// Rotary position embedding tables (Su et al. 2021) in the rotate-half layout.
#[derive(Debug)]
pub struct Rotary {
    cos: Tensor,        // (max_len, head_dim)
    signed_sin: Tensor, // (max_len, head_dim): -sin on the first half, +sin on the second
}

impl Rotary {
    pub fn new(head_dim: i64, max_len: i64, theta: f64, device: tch::Device) -> Self {
        let half = head_dim / 2;
        let inv_freq = Tensor::arange_start_step(0, half * 2, 2, (Kind::Float, device))
            .divide_scalar(head_dim as f64)
            .multiply_scalar(-theta.ln())
            .exp(); // (half,)
        let pos = Tensor::arange(max_len, (Kind::Float, device)); // (max_len,)
        let freqs = pos.outer(&inv_freq); // (max_len, half)
        let sin = freqs.sin();
        let cos = freqs.cos();
        Rotary { cos: Tensor::cat(&[&cos, &cos], -1), signed_sin: Tensor::cat(&[&sin.neg(), &sin], -1) }
    }

    /// The cosine and signed-sine tables (T, D) of positions `offset..offset+t`.
    pub fn tables(&self, offset: i64, t: i64) -> (Tensor, Tensor) {
        (self.cos.narrow(0, offset, t), self.signed_sin.narrow(0, offset, t))
    }

    /// Rotates `x` of shape (B, H, T, D) whose first position is `offset`:
    /// `x·cos + rotate_half(x)·sin`, where `rotate_half([a, b]) = [-b, a]`. The sign
    /// lives in the table, so the rotation is a roll, a multiply and a fused
    /// multiply-add.
    pub fn apply(&self, x: &Tensor, offset: i64) -> Tensor {
        let t = x.size()[2];
        let d = x.size()[3];
        let (cos, sin) = self.tables(offset, t);
        let (cos, sin) = (cos.to_kind(x.kind()), sin.to_kind(x.kind())); // (T, D) each
        let swapped = x.roll([d / 2], [-1]); // (B, H, T, D): [b, a]
        (x * cos).addcmul(&swapped, &sin)
    }
}

/// One layer's keys and values, preallocated to the context length.
#[derive(Debug)]
pub struct LayerKv {
    k: Tensor, // (B, H_kv, max_len, D)
    v: Tensor, // (B, H_kv, max_len, D)
}

impl LayerKv {
    pub fn new(batch: i64, kv_heads: i64, max_len: i64, head_dim: i64, kind: Kind, device: tch::Device) -> Self {
        let shape = [batch, kv_heads, max_len, head_dim];
        LayerKv { k: Tensor::zeros(shape, (kind, device)), v: Tensor::zeros(shape, (kind, device)) }
    }
}

/// Shape of an attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionDims {
    pub d_model: i64,
    pub n_heads: i64,
    pub n_kv_heads: i64,
    pub head_dim: i64,
    pub bias: bool,
}

/// Everything an attention layer needs besides its input and its cache.
#[derive(Debug, Clone, Copy)]
pub struct AttnContext<'a> {
    pub rotary: Option<&'a Rotary>,
    pub mode: AttentionMode,
    /// Position of the input's first token.
    pub offset: i64,
    pub lora: Option<&'a BlockLora>,
    /// (B, offset + T) bool, true for real tokens; padded keys are never attended.
    pub key_valid: Option<&'a Tensor>,
}

/// Multi-head attention with grouped-query key/value heads, computed by libtorch's
/// fused `scaled_dot_product_attention`.
#[derive(Debug)]
pub struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    o_proj: nn::Linear,
    dims: AttentionDims,
}

impl Attention {
    pub fn new(p: nn::Path, dims: AttentionDims) -> Self {
        let AttentionDims { d_model, n_heads, n_kv_heads, head_dim, bias } = dims;
        Attention {
            q_proj: linear(&p / "q_proj", d_model, n_heads * head_dim, bias),
            k_proj: linear(&p / "k_proj", d_model, n_kv_heads * head_dim, bias),
            v_proj: linear(&p / "v_proj", d_model, n_kv_heads * head_dim, bias),
            o_proj: linear(&p / "o_proj", n_heads * head_dim, d_model, bias),
            dims,
        }
    }

    /// `x` is (B, T, C); `ctx.offset` is the position of its first token. With a
    /// cache, keys and values are written at `offset..offset+T` and attention covers
    /// `0..offset+T`. With `ctx.lora`, adapted projections add their updates; with
    /// `ctx.key_valid`, padded keys are never attended.
    pub fn forward(&self, x: &Tensor, cache: Option<&mut LayerKv>, ctx: &AttnContext<'_>) -> Tensor {
        let AttnContext { rotary, mode, offset, lora, key_valid } = *ctx;
        let (b, t, _) = x.size3().unwrap_or((0, 0, 0));
        let AttentionDims { n_heads, n_kv_heads, head_dim, .. } = self.dims;
        let (q, k, v) = match rotary {
            // Training batches and prefills: one GEMM for [q | k | v] (plus any LoRA
            // updates in their columns), and one fused pass that splits it into heads
            // and rotates queries and keys.
            Some(r) if rows(x) >= FUSE_MIN_ROWS && kernels::applies(x) => {
                let (cos, sin) = r.tables(offset, t);
                let qkv = concat_linear(x, &[&self.q_proj, &self.k_proj, &self.v_proj]); // (B, T, (H+2Hkv)*D)
                let (q_width, kv_width) = (n_heads * head_dim, n_kv_heads * head_dim);
                let picks: [(Pick, i64); 3] =
                    [(|l| &l.q_proj, q_width), (|l| &l.k_proj, kv_width), (|l| &l.v_proj, kv_width)];
                let qkv = adapt_concat(qkv, x, lora, &picks);
                let [q, k, v] = kernels::rope_qkv(&qkv, &cos, &sin, n_heads, n_kv_heads);
                (q, k, v) // (B, H, T, D), (B, Hkv, T, D) twice
            }
            _ => {
                let [q, k, v]: [Tensor; 3] = fused_linear(x, &[&self.q_proj, &self.k_proj, &self.v_proj])
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("three projections give three outputs"));
                let q = adapt(q, x, lora, |l| &l.q_proj); // (B, T, H*D)
                let k = adapt(k, x, lora, |l| &l.k_proj); // (B, T, Hkv*D)
                let v = adapt(v, x, lora, |l| &l.v_proj); // (B, T, Hkv*D)
                let q = q.view([b, t, n_heads, head_dim]).transpose(1, 2); // (B, H, T, D)
                let k = k.view([b, t, n_kv_heads, head_dim]).transpose(1, 2); // (B, Hkv, T, D)
                let v = v.view([b, t, n_kv_heads, head_dim]).transpose(1, 2); // (B, Hkv, T, D)
                match rotary {
                    Some(r) => (r.apply(&q, offset), r.apply(&k, offset), v),
                    None => (q, k, v),
                }
            }
        };
        let (k, v) = match cache {
            Some(kv) => {
                kv.k.narrow(2, offset, t).copy_(&k);
                kv.v.narrow(2, offset, t).copy_(&v);
                (kv.k.narrow(2, 0, offset + t), kv.v.narrow(2, 0, offset + t)) // (B, Hkv, S, D)
            }
            None => (k, v),
        };
        let gqa = n_kv_heads != n_heads;
        let s = offset + t;
        let pad = key_valid.map(|m| m.view([b, 1, 1, s])); // (B, 1, 1, S): true where a key is a real token
        let y = match (mode, pad) {
            (AttentionMode::Bidirectional, pad) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, pad, 0.0, false, None, gqa)
            }
            (AttentionMode::Causal, Some(pad)) => {
                let causal = Tensor::ones([t, s], (Kind::Bool, x.device())).tril(offset); // (T, S)
                let mask = causal.logical_and(&pad); // (B, 1, T, S)
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, gqa)
            }
            // A single query, or a full prefill, is what `is_causal` handles natively.
            (AttentionMode::Causal, None) if t == 1 || offset == 0 => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, t > 1, None, gqa)
            }
            // A chunk appended after cached positions: query i sees keys 0..=offset+i.
            (AttentionMode::Causal, None) => {
                let mask = Tensor::ones([t, s], (Kind::Bool, x.device())).tril(offset); // (T, S)
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, gqa)
            }
        }; // (B, H, T, D)
        let y = y.transpose(1, 2).contiguous().view([b, t, n_heads * head_dim]); // (B, T, H*D)
        adapt(apply_linear(&self.o_proj, &y), &y, lora, |l| &l.o_proj)
    }
}

/// The feed-forward block; parameters at `gate_proj`, `up_proj`, `down_proj`.
#[derive(Debug)]
pub struct Mlp {
    gate_proj: Option<nn::Linear>,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, kind: MlpKind, d_model: i64, d_ff: i64, bias: bool) -> Self {
        let gate_proj = match kind {
            MlpKind::SwiGlu => Some(linear(&p / "gate_proj", d_model, d_ff, bias)),
            MlpKind::Gelu => None,
        };
        Mlp {
            gate_proj,
            up_proj: linear(&p / "up_proj", d_model, d_ff, bias),
            down_proj: linear(&p / "down_proj", d_ff, d_model, bias),
        }
    }
}

impl Mlp {
    /// The block's output; with `lora`, adapted projections add their updates.
    pub fn forward_lora(&self, x: &Tensor, lora: Option<&BlockLora>) -> Tensor {
        let h = match &self.gate_proj {
            // Training batches and prefills: one GEMM for [gate | up] (plus any LoRA
            // updates in their columns) and the fused SwiGLU kernel, whose backward
            // writes that GEMM's output gradient whole.
            Some(gate) if rows(x) >= FUSE_MIN_ROWS && kernels::applies(x) => {
                let f = self.up_proj.ws.size()[0];
                let picks: [(Pick, i64); 2] = [(|l| &l.gate_proj, f), (|l| &l.up_proj, f)];
                let gu = adapt_concat(concat_linear(x, &[gate, &self.up_proj]), x, lora, &picks);
                kernels::swiglu(&gu) // (B, T, F)
            }
            Some(gate) => {
                let [g, u]: [Tensor; 2] = fused_linear(x, &[gate, &self.up_proj])
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("two projections give two outputs"));
                let g = adapt(g, x, lora, |l| &l.gate_proj); // (B, T, F)
                let u = adapt(u, x, lora, |l| &l.up_proj); // (B, T, F)
                g.silu() * u // (B, T, F)
            }
            None => adapt(apply_linear(&self.up_proj, x), x, lora, |l| &l.up_proj).gelu("none"), // (B, T, F)
        };
        adapt(apply_linear(&self.down_proj, &h), &h, lora, |l| &l.down_proj)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_lora(x, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_preserves_norm_and_is_identity_at_position_zero() {
        let r = Rotary::new(8, 16, 10_000.0, tch::Device::Cpu);
        let x = Tensor::randn([1, 2, 4, 8], (Kind::Float, tch::Device::Cpu));
        let y = r.apply(&x, 0);
        let diff = (y.narrow(2, 0, 1) - x.narrow(2, 0, 1)).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "position 0 must not rotate, diff {diff}");
        let nx = x.norm_scalaropt_dim(2.0, [-1], false);
        let ny = y.norm_scalaropt_dim(2.0, [-1], false);
        assert!((nx - ny).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn rotary_matches_the_rotate_half_formula() {
        // Hugging Face Llama: q·cos + rotate_half(q)·sin with rotate_half([a, b]) = [-b, a].
        let (d, t, offset) = (8, 5, 3);
        let r = Rotary::new(d, 16, 10_000.0, tch::Device::Cpu);
        let x = Tensor::randn([2, 3, t, d], (Kind::Float, tch::Device::Cpu));
        let inv: Vec<f64> = (0..d / 2).map(|i| 10_000f64.powf(-2.0 * i as f64 / d as f64)).collect();
        let want = x.zeros_like();
        for p in 0..t {
            for i in 0..d / 2 {
                let angle = (p + offset) as f64 * inv[i as usize];
                let a = x.narrow(2, p, 1).narrow(3, i, 1);
                let b = x.narrow(2, p, 1).narrow(3, i + d / 2, 1);
                want.narrow(2, p, 1).narrow(3, i, 1).copy_(&(&a * angle.cos() - &b * angle.sin()));
                want.narrow(2, p, 1).narrow(3, i + d / 2, 1).copy_(&(&b * angle.cos() + &a * angle.sin()));
            }
        }
        let diff = (r.apply(&x, offset) - want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "rotary differs from the reference by {diff}");
    }

    #[test]
    fn rms_norm_matches_its_definition_with_gradients() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let n = Norm::new(vs.root() / "n", NormKind::RmsNorm, 6, 1e-5);
        tch::no_grad(|| n.weight.shallow_clone().copy_(&Tensor::from_slice(&[0.5f32, 1.0, 1.5, 2.0, -1.0, 3.0])));
        let x = (Tensor::randn([4, 6], (Kind::Float, tch::Device::Cpu)) * 3.0).set_requires_grad(true);
        let y = n.forward(&x);
        let want = &x * (x.square().mean_dim(Some([-1i64].as_slice()), true, Kind::Float) + 1e-5).rsqrt() * &n.weight;
        assert!((&y - &want).abs().max().double_value(&[]) < 1e-5);
        let gy = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], false, false);
        let gw = Tensor::run_backward(&[want.sum(Kind::Float)], &[&x], false, false);
        assert!((&gy[0] - &gw[0]).abs().max().double_value(&[]) < 1e-4, "gradients must match too");
    }

    #[test]
    fn rms_norm_normalises_rows() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let n = Norm::new(vs.root() / "n", NormKind::RmsNorm, 6, 1e-6);
        let x = Tensor::randn([3, 6], (Kind::Float, tch::Device::Cpu)) * 5.0;
        let rms = n.forward(&x).square().mean_dim(Some([-1i64].as_slice()), false, Kind::Float).sqrt();
        assert!((rms - 1.0).abs().max().double_value(&[]) < 1e-4);
    }
}
