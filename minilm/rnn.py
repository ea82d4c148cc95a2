"""Recurrent language models, written out one time step at a time: LSTM and GRU layers, and `RNNLM`.

- `lstm_cell` / `LSTM`: the long short-term memory of Hochreiter & Schmidhuber 1997 ("Long Short-Term Memory",
  Neural Computation 9(8), section 4: the memory cell with its constant error carousel, input and output gates),
  with the forget gate of Gers, Schmidhuber & Cummins 2000 ("Learning to Forget", Neural Computation 12(10)), as
  every LSTM since has it (Eqs. 10.3-10.5).
- `gru_cell` / `GRU`: the gated recurrent unit of Cho et al. 2014 (https://arxiv.org/abs/1406.1078, section 2.3: reset
  gate r, update gate z), in the variant PyTorch and cuDNN compute (the reset gate applied after the matmul;
  Eqs. 10.6-10.8).
- `RNNLM`: token embedding -> stacked recurrent layers -> dropout -> LM head (Eq. 10.9), with the interface of
  `CausalLM`: `forward(idx, targets=None) -> (logits, loss)`, `generate(...)` carrying the recurrent state from one
  step to the next (the recurrent analogue of the KV cache), `num_params()`, `flops_per_token()`.

The layers are drop-in twins of `torch.nn.LSTM` / `torch.nn.GRU`: the same constructor arguments (but batch-first by
default, as all of minilm), the same forward signature and outputs, and a `state_dict` with the same keys
(`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, ...), shapes and gate order (LSTM: i, f, g, o; GRU:
r, z, n), so weights load both ways. `ModelConfig.fused_kernels` swaps in PyTorch's fused kernels (tested equal).

Left out on purpose: bidirectional layers, peephole connections (Gers & Schmidhuber 2000), projections
(`proj_size`), packed variable-length sequences, truncated BPTT across batches (every training window starts from a
zero state). Read beside lectures/10_rnn_vs_attention.ipynb.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .model import next_token_loss
from .sampling import append_token, sample_next


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
              bias_ih: torch.Tensor | None = None, bias_hh: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step. x: (B, I); h, c: (B, H); weight_ih: (4H, I); weight_hh: (4H, H); biases: (4H,), the rows in
    PyTorch's gate order i, f, g, o. Returns (h_t, c_t), each (B, H)."""
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, 4H); two biases, as PyTorch
    i, f, g, o = gates.chunk(4, dim=-1)  # 4 x (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)  # Eq. 10.3: the gates
    c = f * c + i * g  # Eq. 10.4: the cell state is updated by addition, so dc_t/dc_{t-1} = f (no matrix, no tanh')
    h = o * torch.tanh(c)  # Eq. 10.5: the output gate decides how much of the cell the next layer and step see
    return h, c


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor | None = None, bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """One GRU step. x: (B, I); h: (B, H); weight_ih: (3H, I); weight_hh: (3H, H); biases: (3H,), the rows in
    PyTorch's gate order r, z, n. Returns h_t (B, H)."""
    x_r, x_z, x_n = F.linear(x, weight_ih, bias_ih).chunk(3, dim=-1)  # 3 x (B, H)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)  # 3 x (B, H)
    r = torch.sigmoid(x_r + h_r)  # Eq. 10.6: reset gate
    z = torch.sigmoid(x_z + h_z)  # Eq. 10.6: update gate
    # Eq. 10.7: the candidate. Cho et al. reset h before the matmul, tanh(W x + U (r * h)); PyTorch and cuDNN reset
    # the product, tanh(W x + r * (U h + b)), so that U h for all three gates is one matmul. We follow PyTorch.
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h  # Eq. 10.8: z interpolates between keeping h_{t-1} and taking the candidate


class RecurrentLayers(nn.Module):
    """What LSTM and GRU share: per-layer parameters named as torch.nn's, and the loop over layers and time."""

    n_gates: int  # 4 for the LSTM (i, f, g, o), 3 for the GRU (r, z, n)
    n_states: int  # 2 for the LSTM (h, c), 1 for the GRU (h)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        G, H = self.n_gates, hidden_size
        for layer in range(num_layers):  # the names and shapes of torch.nn.LSTM / GRU, so state_dicts load both ways
            width = input_size if layer == 0 else hidden_size
            setattr(self, f"weight_ih_l{layer}", nn.Parameter(torch.empty(G * H, width)))  # (G H, I)
            setattr(self, f"weight_hh_l{layer}", nn.Parameter(torch.empty(G * H, H)))  # (G H, H)
            if bias:
                setattr(self, f"bias_ih_l{layer}", nn.Parameter(torch.empty(G * H)))  # (G H,)
                setattr(self, f"bias_hh_l{layer}", nn.Parameter(torch.empty(G * H)))  # (G H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.hidden_size)  # PyTorch's initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, layer: int) -> tuple:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer; the biases are None with bias=False."""
        return tuple(getattr(self, f"{kind}_l{layer}", None) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def step(self, x: torch.Tensor, state: tuple, weights: tuple) -> tuple:
        raise NotImplementedError

    def run(self, x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        """x: (B, T, I) (or (T, B, I) without batch_first); state: n_states tensors (num_layers, B, H) or None for
        zeros. Returns the last layer's outputs (B, T, H) and the final state, n_states x (num_layers, B, H)."""
        assert x.dim() == 3, f"expected a batch of sequences (B, T, I), got shape {tuple(x.shape)}"
        if not self.batch_first:
            x = x.transpose(0, 1)  # (B, T, I)
        B, T, _ = x.shape
        if state is None:
            state = tuple(x.new_zeros(self.num_layers, B, self.hidden_size) for _ in range(self.n_states))
        final = []
        for layer in range(self.num_layers):
            weights = self.layer_weights(layer)
            s = tuple(part[layer] for part in state)  # n_states x (B, H)
            outputs = []
            for t in range(T):  # Eq. 10.1: one step at a time; autograd back through this loop is BPTT (Eq. 10.2)
                s = self.step(x[:, t], s, weights)
                outputs.append(s[0])  # h_t is the output, for both cells
            x = torch.stack(outputs, dim=1)  # (B, T, H): the next layer's input
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)  # between layers, as torch.nn's `dropout` argument
            final.append(s)
        out = x if self.batch_first else x.transpose(0, 1)
        return out, tuple(torch.stack(parts) for parts in zip(*final))  # n_states x (num_layers, B, H)


class LSTM(RecurrentLayers):
    """A multi-layer LSTM written with `lstm_cell`; forward(x, (h_0, c_0)=None) -> (output, (h_n, c_n)) as
    torch.nn.LSTM. x: (B, T, I); h, c: (num_layers, B, H); output: (B, T, H)."""

    n_gates, n_states = 4, 2

    def step(self, x, state, weights):
        return lstm_cell(x, *state, *weights)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        return self.run(x, state)  # (output, (h_n, c_n))


class GRU(RecurrentLayers):
    """A multi-layer GRU written with `gru_cell`; forward(x, h_0=None) -> (output, h_n) as torch.nn.GRU.
    x: (B, T, I); h: (num_layers, B, H); output: (B, T, H)."""

    n_gates, n_states = 3, 1

    def step(self, x, state, weights):
        return (gru_cell(x, state[0], *weights),)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None):
        out, (h,) = self.run(x, None if h is None else (h,))
        return out, h


LAYERS = {("lstm", False): LSTM, ("lstm", True): nn.LSTM, ("gru", False): GRU, ("gru", True): nn.GRU}


class RNNLM(nn.Module):
    """Embedding -> n_layers recurrent layers of width d_model -> dropout -> LM head. A causal LM by construction:
    h_t only ever sees x_1..x_t. `forward(idx, targets=None, state=None) -> (logits, loss)`.

    Reads from ModelConfig: arch ("lstm" or "gru"), vocab_size, d_model (the embedding and hidden width: with
    weight tying the head needs them equal), n_layers, dropout, bias, tie_weights, init_std and fused_kernels
    (PyTorch's nn.LSTM / nn.GRU instead of the loop above; the same parameter names, so checkpoints move between
    the two). max_seq_len is only the training window: the recurrence itself has no context limit.
    The attention fields (n_heads, d_ff, attn_impl, ...) are unused.

    Untie the weights (tie_weights=False, as the presets do): no LayerNorm rescales the input of a recurrent layer, so
    a tied table small enough for the head (N(0, 0.02^2)) feeds the gates inputs of size ~0.02 that barely move
    them. Measured (bench/long_range.py --one-k 1, 600 steps): recalling the token one step back, the tied LSTM stayed
    at chance (accuracy 0.08), the untied one with N(0, 1) inputs was right every time (1.00).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        assert config.arch in ("lstm", "gru"), f"RNNLM builds arch 'lstm' or 'gru', not {config.arch!r}"
        self.config = config
        V, D, L = config.vocab_size, config.d_model, config.n_layers
        self.tok_emb = nn.Embedding(V, D)  # E: (V, D)
        self.drop = nn.Dropout(config.dropout)  # on the non-recurrent connections only (Zaremba et al. 2014)
        layer = LAYERS[config.arch, config.fused_kernels]
        self.rnn = layer(D, D, num_layers=L, bias=config.bias, batch_first=True, dropout=config.dropout if L > 1 else 0.0)
        self.lm_head = nn.Linear(D, V, bias=False)  # (D -> V)
        if config.tie_weights:  # one table for both ends: small, so the logits start small (loss ~ ln V)
            self.lm_head.weight = self.tok_emb.weight  # logits = h E^T, as CausalLM (Press & Wolf 2017)
            nn.init.normal_(self.tok_emb.weight, std=config.init_std)
        else:  # untied: inputs of size ~1 (nn.Embedding's N(0, 1), the scale of char-rnn's one-hot inputs), a small head
            nn.init.normal_(self.tok_emb.weight, std=1.0)
            nn.init.normal_(self.lm_head.weight, std=config.init_std)
        if config.arch == "lstm" and config.bias:
            # forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015, https://proceedings.mlr.press/v37/
            # jozefowicz15.html, section 2.2): f starts near sigmoid(1) = 0.73 so the cell keeps its content early
            # in training instead of halving it every step. Rows H..2H are f in the order i, f, g, o.
            for layer_index in range(L):
                with torch.no_grad():
                    getattr(self.rnn, f"bias_ih_l{layer_index}")[D:2 * D].fill_(1.0)
                    getattr(self.rnn, f"bias_hh_l{layer_index}")[D:2 * D].fill_(0.0)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state=None):
        logits, _ = self.forward_with_state(idx, state)
        loss = None if targets is None else next_token_loss(logits, targets)  # Eq. 2.2, as every causal LM here
        return logits, loss

    def forward_with_state(self, idx: torch.Tensor, state=None):
        """Logits (B, T, V) and the final recurrent state (LSTM: (h, c), GRU: h; each (n_layers, B, D)), starting
        from `state` (None: zeros). Feeding the state back with the next tokens continues the same sequence."""
        B, T = idx.shape
        x = self.drop(self.tok_emb(idx))  # (B, T, D)
        h, state = self.rnn(x, state)  # Eq. 10.1: h_t = f(x_t, h_{t-1}) in every layer, (B, T, D)
        logits = self.lm_head(self.drop(h))  # Eq. 10.9: logits_t = h_t E^T, (B, T, V)
        return logits, state

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Append up to `max_new_tokens` sampled tokens to `idx` (B, T) and return (B, T + n), as CausalLM.generate.

        With `use_cache` the prompt is read once and each step feeds only the newest token together with the state
        carried from the step before: the state is all a recurrent model remembers, so this is exact and costs the
        same per token however long the text grows (a Transformer's KV cache grows with the text instead). Without
        it every step re-reads the whole sequence from a zero state (the check that carrying the state is exact).
        """
        was_training = self.training
        self.eval()
        state, done = None, torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        for step in range(max_new_tokens):
            if use_cache:
                logits, state = self.forward_with_state(idx if step == 0 else idx[:, -1:], state)  # (B, T or 1, V)
            else:
                logits, _ = self.forward_with_state(idx)  # the whole prefix again: (B, T, V)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            idx, finished = append_token(idx, nxt, done, eos_id)  # (B, T + 1)
            if finished:
                break
        self.train(was_training)
        return idx

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counting tied weights once. There is no position table, so `non_embedding` (which leaves out
        CausalLM's) changes nothing here; it is accepted so both models are counted the same way."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, forward + backward: 6 N (Eq. 5.11 without its attention term). Every weight
        multiplies once per token and step, and nothing grows with the position in the text, so seq_len is ignored:
        the cost per token of a recurrent model is the same at any context length."""
        return 6 * self.num_params()
