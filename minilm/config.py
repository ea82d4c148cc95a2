"""Model configuration: one typed dataclass, validated where it is built.

`ModelConfig` holds every number that fixes the *shape* of a Transformer (Vaswani et al. 2017,
https://arxiv.org/abs/1706.03762, section 3) and the few switches that choose between textbook variants
(exact vs tanh GELU, weight tying, hand-written vs fused attention). Training settings (learning rate,
batch size, ...) are not here: they live in a dataclass at the top of each script, whose fields
minilm/cli.py turns into --flags.

The last five fields switch a GPT-2 block into a Llama block one change at a time (RMSNorm, SwiGLU, rotary positions,
grouped-query attention; lectures/09_modern_blocks.ipynb); their defaults are GPT-2's, so a checkpoint saved before
they existed loads unchanged.

Left out on purpose: ALiBi positions, rope scaling (NTK, YaRN, Llama 3's), sliding windows, mixture of experts.
Explained in lectures/00_overview.ipynb (notation and shape legend) and lectures/05_model.ipynb.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

# One label for "no loss here", shared by the data pipeline and every head: PyTorch's cross_entropy default.
IGNORE_INDEX = -100


@dataclass
class ModelConfig:
    arch: str = field(default="transformer", metadata={"help": "\"transformer\" (GPT / BERT, model.py) or a recurrent LM, "
                      "\"lstm\" or \"gru\" (rnn.py: d_model wide, n_layers deep; the attention fields are unused)",
                      "choices": ["transformer", "lstm", "gru"]})
    vocab_size: int = field(default=65, metadata={"help": "V: number of token ids (65 = Tiny Shakespeare's characters)"})
    max_seq_len: int = field(default=256, metadata={"help": "T: longest sequence the learned position table covers (the context length)"})
    d_model: int = field(default=128, metadata={"help": "D: width of the residual stream"})
    n_heads: int = field(default=4, metadata={"help": "H: attention heads; d_head = D / H"})
    n_layers: int = field(default=4, metadata={"help": "number of Transformer blocks"})
    d_ff: int | None = field(default=None, metadata={"help": "hidden width of the MLP; None means 4 * d_model (Vaswani et al., section 3.3)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights, residual branches and embeddings"})
    bias: bool = field(default=True, metadata={"help": "biases in Linear and LayerNorm (GPT-2 and BERT use them)"})
    norm_eps: float = field(default=1e-5, metadata={"help": "LayerNorm epsilon (GPT-2: 1e-5; BERT: 1e-12)"})
    gelu: str = field(default="tanh", metadata={"help": "\"tanh\" (GPT-2's approximation) or \"exact\" (erf form, BERT)"})
    init_std: float = field(default=0.02, metadata={"help": "std of the N(0, std^2) initialisation of weights and "
                            "embeddings (GPT-2, BERT: 0.02). Attention logits start about d_model * std^2 wide, so "
                            "a small masked LM wants more (imdb-mlm: 0.05 at d_model 128)"})
    tie_weights: bool = field(default=True, metadata={"help": "share the token embedding with the output projection (Press & Wolf 2017)"})
    attn_impl: str = field(default="manual", metadata={"help": "\"manual\" (hand-written, taught and tested) or \"sdpa\" (PyTorch's fused kernel)"})
    fused_kernels: bool = field(default=False, metadata={"help": "compute LayerNorm and GELU with PyTorch's "
                                "one-kernel F.layer_norm / F.gelu instead of the hand-written formulas (tested "
                                "equal): ~25% faster training on a CPU"})
    causal: bool = field(default=True, metadata={"help": "True: GPT-style left-to-right; False: BERT-style bidirectional"})
    # BERT's encoder (Devlin et al. 2019, section 3; lectures/05_model.ipynb, section 10). The defaults are GPT-2's
    # and keep every earlier model and checkpoint as it was.
    norm_position: str = field(default="pre", metadata={"help": "\"pre\": x + Sublayer(LN(x)) and a final LayerNorm "
                               "(GPT-2, Eqs. 4.5-4.6); \"post\": LN(x + Sublayer(x)), no final LayerNorm (the original "
                               "Transformer and BERT, Eq. 4.7)"})
    type_vocab_size: int = field(default=0, metadata={"help": "token-type (segment) embeddings added to the input: "
                                 "BERT's sentence A / B (2); 0 = none"})
    embed_norm: bool = field(default=False, metadata={"help": "LayerNorm on the summed embeddings before the first "
                             "block (BERT)"})
    pooler: bool = field(default=False, metadata={"help": "BERT's pooler, dense + tanh on the first token's hidden "
                         "state, kept in the backbone for the classifier's 'pooler' pooling"})
    # ---- GPT-2 -> Llama, one switch each (lectures/09_modern_blocks.ipynb); the defaults are GPT-2's ----
    norm: str = field(default="layernorm", metadata={"help": "\"layernorm\" (GPT-2, BERT) or \"rmsnorm\" (Llama; Zhang & Sennrich 2019)"})
    mlp: str = field(default="gelu", metadata={"help": "\"gelu\" (GPT-2's MLP) or \"swiglu\" (Llama's gated MLP; Shazeer 2020); "
                     "with swiglu and no d_ff, d_ff follows the Llama rule 2/3 * 4 * d_model rounded up to a multiple of 64"})
    pos_emb: str = field(default="learned", metadata={"help": "\"learned\" (a position table, GPT-2) or \"rope\" (rotary "
                         "positions on q and k, no table; Su et al. 2021)"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base: frequencies theta^(-2i/d_head) (RoFormer, Llama 1-2: 10000)"})
    n_kv_heads: int | None = field(default=None, metadata={"help": "key/value heads; None means n_heads (multi-head), fewer is "
                                   "grouped-query attention (Ainslie et al. 2023), 1 is multi-query; must divide n_heads"})

    def __post_init__(self) -> None:
        if self.arch not in ("transformer", "lstm", "gru"):
            raise ValueError(f"ModelConfig.arch must be 'transformer', 'lstm' or 'gru', got {self.arch!r}")
        if self.d_ff is None:
            self.d_ff = swiglu_hidden_size(self.d_model) if self.mlp == "swiglu" else 4 * self.d_model
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for name in ("vocab_size", "max_seq_len", "d_model", "n_heads", "n_layers", "d_ff", "n_kv_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.arch == "transformer" and self.d_model % self.n_heads != 0:  # a recurrent LM has no heads
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}): "
                f"each head gets d_model / n_heads dimensions; try n_heads in {_divisors(self.d_model)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("norm_eps", "init_std", "rope_theta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ModelConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not isinstance(self.type_vocab_size, int) or isinstance(self.type_vocab_size, bool) or self.type_vocab_size < 0:
            raise ValueError(f"ModelConfig.type_vocab_size must be an integer >= 0 (0 = no token types), "
                             f"got {self.type_vocab_size!r}")
        for name, allowed in (("gelu", ("tanh", "exact")), ("norm_position", ("pre", "post")),
                              ("attn_impl", ("manual", "sdpa")), ("norm", ("layernorm", "rmsnorm")),
                              ("mlp", ("gelu", "swiglu")), ("pos_emb", ("learned", "rope"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be {' or '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"ModelConfig.n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads}): each "
                             f"key/value head serves n_heads / n_kv_heads query heads; try n_kv_heads in "
                             f"{_divisors(self.n_heads)}")
        if self.pos_emb == "rope" and self.d_head % 2 != 0:
            raise ValueError(f"ModelConfig.pos_emb='rope' needs an even d_head (d_model / n_heads), got d_head "
                             f"{self.d_head}: RoPE rotates features in pairs; change d_model or n_heads")

    @property
    def d_head(self) -> int:
        """Dh = D / H, the width of one attention head."""
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        """A JSON-safe dict (checkpoint metadata is JSON, never pickle)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return config_from_dict(cls, d)


def swiglu_hidden_size(d_model: int, multiple_of: int = 64) -> int:
    """Llama's SwiGLU width (Eq. 9.4): 2/3 of GPT-2's 4 D, so the three matrices of SwiGLU hold as many weights as
    the MLP's two, rounded up to a multiple of `multiple_of` for matmul-friendly shapes. Llama uses 256 at D = 4096;
    64 keeps small models close to 8/3 D (D = 128 -> 384; at GPT-2 small's D = 768 both give 2048)."""
    hidden = int(2 * 4 * d_model / 3)  # Eq. 9.4: Llama's int(2 * hidden_dim / 3), hidden_dim = 4 D
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, min(n, 64) + 1) if n % k == 0]


def config_from_dict(cls: type, d: dict):
    """A config dataclass from checkpoint metadata, refusing fields it does not know (a newer or foreign file)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**d)
