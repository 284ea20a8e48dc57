"""The model interface every evaluation goes through: lm-evaluation-harness's three methods.

`loglikelihood`, `loglikelihood_rolling` and `generate_until` are implemented
once here on top of four primitives (`encode`, `forward`, `generate`, and the
attributes `max_length` / `prefix_token_id`), so an lmforge run and a Hugging
Face model are scored by exactly the same code and their numbers compare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.progress import bar


class EvalLM:
    name: str = "model"
    max_length: int = 2048                 # tokens the model attends over in one forward pass
    prefix_token_id: int | None = None     # scores a text's first token (BOS, else end-of-text)
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    generative: bool = True                # has next-token likelihoods (an encoder has not)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def chat_prompt(self, text: str) -> str:
        """`text` as one user message in the model's chat template, up to the assistant's turn
        (`lmforge eval --chat`: how a chat-tuned model is asked)."""
        raise NotImplementedError(f"{self.name}: no chat template")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) logits."""
        raise NotImplementedError

    def generate(self, prompt: str, *, max_tokens: int, stop: list[str], temperature: float,
                 seed: int) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release background resources (an inference engine's thread)."""

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
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

    def _windows(self, ctx: list[int], cont: list[int]) -> list[tuple[list[int], list[int]]]:
        """(input ids, targets) pairs whose last logits predict `cont` after `ctx`.

        `cont` is cut into chunks of at most max_length tokens, front to back; each chunk
        is fed with the max_length tokens before its last one. A short request is one
        window with the context cut from the left; a long text gets lm-eval's rolling
        windows exactly (disjoint predictions, the final chunk with full context)."""
        tokens = ctx + cont
        windows = []
        for begin in range(len(ctx), len(tokens), self.max_length):
            end = min(begin + self.max_length, len(tokens))
            windows.append((tokens[max(0, end - 1 - self.max_length):end - 1], tokens[begin:end]))
        return windows

    @torch.no_grad()
    def _scored_windows(self, requests: list[tuple[list[int], list[int]]]):
        """(request index, window number within it, log-probabilities of the window's targets
        (T, V), targets), one per window, in no particular order."""
        windows = []   # (request index, window number, input ids, targets)
        for i, (ctx, cont) in enumerate(requests):
            if not ctx:
                raise ValueError("a continuation needs at least one context token")
            windows += [(i, k, inp, tgt) for k, (inp, tgt) in enumerate(self._windows(ctx, cont))]
        # longest first: batches of similar length waste less padding
        windows.sort(key=lambda w: -len(w[2]))
        for start in bar(range(0, len(windows), self.batch_size), desc=f"{self.name} scoring"):
            batch_windows = windows[start:start + self.batch_size]
            width = max(len(inp) for _, _, inp, _ in batch_windows)
            batch = torch.zeros(len(batch_windows), width, dtype=torch.long)
            for j, (_, _, inp, _) in enumerate(batch_windows):   # right padding: causal attention never sees it
                batch[j, :len(inp)] = torch.tensor(inp)
            logprobs = F.log_softmax(self.forward(batch.to(self.device)).float(), dim=-1).cpu()
            for j, (i, k, inp, tgt) in enumerate(batch_windows):
                yield i, k, logprobs[j, len(inp) - len(tgt):len(inp)], torch.tensor(tgt)

    def score_tokens(self, requests: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """For token-id (context, continuation) pairs: log-likelihood and whether it is greedy."""
        ll = [0.0] * len(requests)
        greedy = [True] * len(requests)
        for i, _, lp, target in self._scored_windows(requests):
            ll[i] += float(lp.gather(1, target.unsqueeze(1)).sum())
            greedy[i] = greedy[i] and bool((lp.argmax(-1) == target).all())
        return list(zip(ll, greedy))

    def token_logprobs(self, requests: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """For token-id (context, continuation) pairs: the log-probability of each continuation token."""
        pieces: list[list[tuple[int, list[float]]]] = [[] for _ in requests]
        for i, k, lp, target in self._scored_windows(requests):
            pieces[i].append((k, lp.gather(1, target.unsqueeze(1))[:, 0].tolist()))
        return [[x for _, chunk in sorted(p) for x in chunk] for p in pieces]

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """log P(continuation | context) and whether greedy decoding would produce it."""
        pairs = [self.encode_pair(c, x) for c, x in requests]
        for (_, cont), (_, text) in zip(pairs, requests):
            if not cont:
                raise ValueError(f"continuation {text!r} encodes to no tokens")
        return self.score_tokens(pairs)

    def rolling_pair(self, text: str) -> tuple[list[int], list[int]]:
        """(conditioning, scored tokens) for a whole text: every token after the prefix token."""
        tokens = self.encode(text)
        if self.prefix_token_id is None:   # nothing to condition the first token on
            return tokens[:1], tokens[1:]
        return [self.prefix_token_id], tokens

    def loglikelihood_rolling(self, texts: list[str]) -> list[float]:
        """Total log-likelihood of each text, in windows of max_length that score every token once."""
        return [ll for ll, _ in self.score_tokens([self.rolling_pair(t) for t in texts])]

    def generate_until(self, requests: list[tuple[str, dict]], seed: int = 0) -> list[str]:
        """Continue each context until one of `until` appears or `max_gen_toks` tokens are made."""
        outs = []
        for context, kwargs in bar(requests, desc=f"{self.name} generating"):
            until = kwargs.get("until", [])
            until = [until] if isinstance(until, str) else list(until)
            # lm-eval asks for sampling with do_sample and may leave the temperature unset
            temperature = kwargs.get("temperature", 1.0 if kwargs.get("do_sample") else 0.0)
            text = self.generate(context, max_tokens=int(kwargs.get("max_gen_toks", 128)), stop=until,
                                 temperature=float(temperature), seed=seed)
            outs.append(cut_at_stop(text, until))
        return outs


def cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[:min(cuts)] if cuts else text
