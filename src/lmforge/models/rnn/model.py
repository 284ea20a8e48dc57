"""The recurrent language model: embedding -> LSTM / GRU / tanh RNN layers -> tied head.

Training runs truncated back-propagation through time over contiguous token streams:
the hidden state at the end of one window is the start of the next (detached), and
it is zeroed where a document begins. `forward` takes that state and a per-position
`resets` mask; it runs PyTorch's fused recurrent kernel over each stretch between
resets, so a batch with a few document starts costs a few kernel calls, not one per
token.

State: one tensor (parts, n_layer, batch, d_model) — parts is 2 for an LSTM (h, c), else 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmforge.models.rnn.config import RNNConfig

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RecurrentLM(nn.Module):
    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("RNNConfig.vocab_size must be set before building the model")
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.rnn = _CELLS[cfg.arch](d, d, num_layers=cfg.n_layer, batch_first=True,
                                    dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if not self.cfg.tie_embeddings:
            nn.init.uniform_(self.head.weight, -0.1, 0.1)
        bound = self.cfg.d_model ** -0.5
        for name, p in self.rnn.named_parameters():
            nn.init.uniform_(p, -bound, bound)
            if self.cfg.arch == "lstm" and name.startswith("bias_ih"):
                d = self.cfg.d_model
                p[d:2 * d].fill_(1.0)   # forget gate open at the start: gradients reach further back

    def zero_state(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        cfg = self.cfg
        return torch.zeros(cfg.state_parts, cfg.n_layer, batch, cfg.d_model,
                           device=device or self.embed.weight.device, dtype=dtype or self.embed.weight.dtype)

    def num_lookup_params(self) -> int:
        return self.embed.weight.numel()

    def run(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent layers over inputs x (B, T, d) from `state`; returns (outputs, new state)."""
        if self.cfg.arch == "lstm":
            out, (h, c) = self.rnn(x, (state[0].contiguous(), state[1].contiguous()))
            return out, torch.stack((h, c))
        out, h = self.rnn(x, state[0].contiguous())
        return out, h.unsqueeze(0)

    def hidden(self, input_ids: torch.Tensor, state: torch.Tensor | None = None,
               resets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (B, T, d) of the last layer and the state after the last position.

        resets (B, T) bool: the state is zeroed before position t of row b where True."""
        B, T = input_ids.shape
        x = self.drop(self.embed(input_ids))
        state = self.zero_state(B, x.device, x.dtype) if state is None else state.to(x.device, x.dtype)
        if resets is None or not bool(resets.any()):
            out, state = self.run(x, state)
            return self.drop(out), state
        cuts = sorted(set(torch.nonzero(resets.any(0)).flatten().tolist()) | {0})
        outs = []
        for a, b in zip(cuts, cuts[1:] + [T]):
            keep = (~resets[:, a]).to(x.dtype)
            state = state * keep[None, None, :, None]
            out, state = self.run(x[:, a:b], state)
            outs.append(out)
        return self.drop(torch.cat(outs, dim=1)), state

    def forward(self, input_ids: torch.Tensor, state: torch.Tensor | None = None,
                resets: torch.Tensor | None = None, return_state: bool = False):
        out, state = self.hidden(input_ids, state, resets)
        logits = self.head(out)
        return (logits, state) if return_state else logits
