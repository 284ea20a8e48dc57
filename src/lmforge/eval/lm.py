"""The model interface every evaluation goes through: lm-evaluation-harness's three methods.

`loglikelihood`, `loglikelihood_rolling` and `generate_until` are implemented
once here on top of four primitives (`encode`, `forward`, `generate`, and the
attributes `max_length` / `prefix_token_id`), so an lmforge run and a Hugging
Face model are scored by exactly the same code and their numbers compare.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.eval.likelihood import score_token_stream


class EvalLM:
    name: str = "model"
    max_length: int = 2048                 # tokens the model attends over in one forward pass
    prefix_token_id: int | None = None     # scores a text's first token (BOS, else end-of-text)
    batch_size: int = 8
    device: torch.device = torch.device("cpu")

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) logits."""
        raise NotImplementedError

    def generate(self, prompt: str, *, max_tokens: int, stop: list[str], temperature: float,
                 seed: int) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release background resources (an inference engine's thread)."""

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        # lets `score_token_stream(self, ...)` treat this object as the model
        return self.forward(input_ids)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing spaces belong to the continuation so "Answer: " + "yes" tokenizes like running
        # text; the continuation's tokens are those the whole string adds after the context's.
        stripped = context.rstrip(" ")
        continuation = context[len(stripped):] + continuation
        context = stripped
        if not context:
            if self.prefix_token_id is None:
                raise ValueError("an empty context needs a model with a BOS or end-of-text token")
            return [self.prefix_token_id], self.encode(continuation)
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    @torch.no_grad()
    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """log P(continuation | context) and whether greedy decoding would produce it."""
        encoded = [self._encode_pair(c, x) for c, x in requests]
        # longest first: batches of similar length waste less padding
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            inputs, conts = [], []
            for i in idx:
                ctx, cont = encoded[i]
                if not cont:
                    raise ValueError(f"continuation {requests[i][1]!r} encodes to no tokens")
                # keep the last max_length+1 tokens; the final one is only predicted, never input
                inputs.append((ctx + cont)[-(self.max_length + 1):][:-1])
                conts.append(cont)
            width = max(len(x) for x in inputs)
            batch = torch.zeros(len(inputs), width, dtype=torch.long)
            for j, x in enumerate(inputs):   # right padding: causal attention never sees it
                batch[j, :len(x)] = torch.tensor(x)
            logprobs = F.log_softmax(self.forward(batch.to(self.device)).float(), dim=-1).cpu()
            for j, i in enumerate(idx):
                n, cont = len(inputs[j]), torch.tensor(conts[j])
                lp = logprobs[j, n - len(cont):n]
                ll = float(lp.gather(1, cont.unsqueeze(1)).sum())
                results[i] = (ll, bool((lp.argmax(-1) == cont).all()))
        return results

    def rolling_tokens(self, text: str) -> tuple[list[int], int]:
        """The token stream scored for `text` and how many of its tokens get a score."""
        tokens = self.encode(text)
        if self.prefix_token_id is None:   # nothing to condition the first token on
            return tokens, max(len(tokens) - 1, 0)
        return [self.prefix_token_id] + tokens, len(tokens)

    def loglikelihood_rolling(self, texts: list[str]) -> list[float]:
        """Total log-likelihood of each text, windows of max_length scoring every token once."""
        out = []
        for text in texts:
            stream, _ = self.rolling_tokens(text)
            nll, _ = score_token_stream(self, np.asarray(stream, dtype=np.int64), self.max_length,
                                        self.batch_size, self.device)
            out.append(-nll)
        return out

    def generate_until(self, requests: list[tuple[str, dict]], seed: int = 0) -> list[str]:
        """Continue each context until one of `until` appears or `max_gen_toks` tokens are made."""
        outs = []
        for context, kwargs in requests:
            until = list(kwargs.get("until", []))
            text = self.generate(context, max_tokens=int(kwargs.get("max_gen_toks", 128)), stop=until,
                                 temperature=float(kwargs.get("temperature", 0.0)), seed=seed)
            outs.append(cut_at_stop(text, until))
        return outs


def cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[:min(cuts)] if cuts else text
