"""The inference engine: the one object everything that generates text goes through.

    engine = Engine.from_run("runs/quickstart")
    engine.generate("Once upon a time", max_tokens=50, temperature=0.8).text
    for piece in engine.stream("Hello"): print(piece, end="")
    engine.chat([{"role": "user", "content": "Hi"}]).text

Every call becomes a `Request` handed to the continuous-batching `Scheduler`,
so concurrent callers (threads, server requests) share forward passes.
"""

from __future__ import annotations

import copy
import queue
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from tokenizers import Tokenizer

from lmforge.errors import UserError
from lmforge.infer.grammar import GrammarEngine
from lmforge.infer.request import Delta, Done, Event, Failed, GenerationResult, Request
from lmforge.infer.sampling import SamplingParams
from lmforge.infer.scheduler import Scheduler
from lmforge.infer.template import ChatTemplate
from lmforge.models import lora
from lmforge.models.io import find_weights, load_model
from lmforge.models.registry import family_of
from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer
from lmforge.tokenizer.specials import STOP_TOKENS

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


# Fused optimizers update parameters in place without bumping their version counters, so an
# engine following a model in training also counts optimizer steps (any optimizer, any model).
_optimizer_steps = [0]
register_optimizer_step_post_hook(
    lambda optimizer, args, kwargs: _optimizer_steps.__setitem__(0, _optimizer_steps[0] + 1))


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"dtype: got {dtype!r}, allowed: {', '.join(DTYPES)}")
    return DTYPES[dtype]


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None, max_batch: int = 16, prefill_chunk: int = 256,
                 chat_template: ChatTemplate | None = None, threads: int | None = None,
                 copy_model: bool = True, int8: bool = False):
        """threads: torch's intra-op threads for this process (None leaves torch's default).

        On a small CPU machine 1 is usually fastest for serving: a small model's decode step
        cannot use more, and the HTTP and scheduler threads need the other cores.

        The engine never changes `model`: it decodes with a private copy (in `dtype`, on
        `device`, re-laid out by the family's kernel) and copies the weights over again
        whenever it starts work after being idle, so an engine made from a model in training
        follows it (it copies only after an optimizer step or an in-place write to a parameter).
        int8: decode with int8 weights where the family's kernel has them (llama, on CPU).
        copy_model=False hands `model` over instead (no second copy in memory;
        `from_run` does this): the engine may then rewrite its weights' layout.
        """
        family = family_of(model)
        if not family.generative:
            instead = ("`lmforge fill-mask` or `lmforge embed`" if "masked_lm" in family.objectives
                       else "`lmforge embed`")
            raise UserError(f"a model of arch '{model.cfg.arch}' is not generative: it cannot generate or chat "
                            f"(use {instead}; `lmforge serve` gives its embeddings)")
        if threads:
            torch.set_num_threads(threads)
        dtype = parse_dtype(dtype)
        self.source = model if copy_model else None
        private = copy.deepcopy(model) if copy_model else model
        if lora.has_lora(private):
            lora.merge_lora(private)     # the engine's own copy: one matrix per layer, as the kernels want
        private = private.to(device=device, dtype=dtype) if dtype else private.to(device)
        self.model = private.eval().requires_grad_(False)
        self.decoder = family.decoder(self.model)
        self.int8 = False
        self.weights_choice = None      # why these decode weights, where `--dtype auto` chose them
        if int8:
            self.use_int8(True)
        self.tokenizer = tokenizer
        self.template = chat_template or ChatTemplate()
        self.context = self.decoder.context
        self.vocab_size = model.cfg.vocab_size
        # lmforge's own stop tokens, and the eos token an imported tokenizer names
        stops = (*STOP_TOKENS, self.template.eos_token)
        self.stop_ids = {i for i in map(tokenizer.token_to_id, stops) if i is not None}
        self._grammars: GrammarEngine | None = None
        self._copied = self._source_stamp()
        self.scheduler = Scheduler(self.decoder, max_batch=max_batch, prefill_chunk=prefill_chunk,
                                   before_work=self._follow_source)

    def _source_stamp(self) -> tuple | None:
        """Changes whenever the source's weights may have: an optimizer step anywhere, or an
        in-place write to one of its parameters (load_state_dict, a manual edit)."""
        if self.source is None:
            return None
        return _optimizer_steps[0], tuple(p._version for p in self.source.parameters())

    @torch.no_grad()
    def _follow_source(self) -> None:
        """Bring the engine's copy up to the source model's weights (scheduler thread, when idle)."""
        stamp = self._source_stamp()
        if stamp == self._copied:
            return
        source = self.source.state_dict()
        if lora.has_lora(self.source):
            source = lora.merged_weights(source, source, self.source.lora.scaling)
        for name, mine in self.model.named_parameters():
            mine.copy_(source[name])
        if self.int8:
            self.decoder.quantize_int8()
        self._copied = stamp

    def use_int8(self, on: bool) -> None:
        """Decode with int8 weights where the family's kernel has them (llama, on CPU), or not."""
        if on and not hasattr(self.decoder, "quantize_int8"):
            raise UserError(f"int8 weights are not available for arch '{self.model.cfg.arch}' (they are for llama)")
        if on:
            try:
                self.decoder.quantize_int8()
            except ValueError as e:
                raise UserError(str(e)) from None
        elif self.int8:
            self.decoder.use_float()
        self.int8 = on

    @classmethod
    def from_run(cls, path: str | Path, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype | None = None, **kw) -> "Engine":
        """Load from a run directory or a checkpoint directory inside one; dtype "int8" decodes with
        int8 weights (see `int8`), "auto" with int8 or float32 weights, whichever measures better
        on this machine (lmforge.infer.weights_choice)."""
        path = Path(path)
        ckpt = find_weights(path)
        tok_dir = find_tokenizer_dir(path, ckpt)
        if dtype == "auto" and torch.device(device).type != "cpu":
            dtype = None              # the weights as stored: int8 decoding is a CPU kernel
        int8 = dtype == "int8"        # float weights loaded, the decode kernel's matrices in int8
        floats = torch.float32 if dtype == "auto" else None if int8 else parse_dtype(dtype)
        model = load_model(ckpt, device=device, dtype=floats)
        engine = cls(model, load_tokenizer(tok_dir), device=device, chat_template=ChatTemplate.from_dir(tok_dir),
                     copy_model=False, int8=int8, **kw)
        if dtype == "auto":
            from lmforge.infer.weights_choice import choose_weights
            try:
                choose_weights(engine, ckpt, path)
            except BaseException:
                engine.close()
                raise
        return engine

    def close(self) -> None:
        self.scheduler.close()

    # -- text <-> tokens ------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        # the template writes <|bos|> itself, so the tokenizer must not add it again
        return self.encode(self.template.render(messages, add_generation_prompt), add_special_tokens=False)

    def prompt_ids(self, prompt: str | list[int]) -> list[int]:
        """Tokenize (if needed) and check a prompt against the vocabulary and the context."""
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise UserError("prompt is empty")
        if not all(isinstance(i, int) and 0 <= i < self.vocab_size for i in ids):
            raise UserError(f"prompt token ids must be integers in [0, {self.vocab_size})")
        if len(ids) > self.context:
            raise UserError(f"prompt is {len(ids)} tokens; the model's context is {self.context}")
        return ids

    @property
    def grammars(self) -> GrammarEngine:
        """The tokenizer as the grammar engine sees it (built on the first constrained request)."""
        if self._grammars is None:
            self._grammars = GrammarEngine(self.tokenizer, self.vocab_size, self.stop_ids)
        return self._grammars

    # -- the request API --------------------------------------------------------------------

    def submit(self, prompt: str | list[int], params: SamplingParams, sink: Callable[[Event], None],
               prompt_logprobs: bool = False) -> Request:
        """Queue a request whose events go to `sink` (called on the scheduler thread)."""
        params.validate()
        if any(not 0 <= token < self.vocab_size for token, _ in params.logit_bias):
            raise UserError(f"logit_bias token ids must be in [0, {self.vocab_size})")
        constraint = self.grammars.constraint(params.grammar) if params.grammar else None
        request = Request(self.prompt_ids(prompt), params, self.tokenizer, self.stop_ids,
                          self.vocab_size, sink, prompt_logprobs=prompt_logprobs, constraint=constraint)
        self.scheduler.submit(request)
        return request

    def events(self, prompt: str | list[int], params: SamplingParams,
               prompt_logprobs: bool = False, deltas: bool = True) -> Iterator[Event]:
        """Events of one request; closing the iterator early cancels the request.

        deltas=False passes on only the final event: the caller's thread is then not woken
        for every token, which on a small CPU costs about a tenth of the decode time."""
        inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        sink = inbox.put if deltas else (lambda event: None if isinstance(event, Delta) else inbox.put(event))
        request = self.submit(prompt, params, sink, prompt_logprobs)
        try:
            while True:
                event = inbox.get()
                if isinstance(event, Failed):
                    raise event.error
                yield event
                if isinstance(event, Done):
                    return
        finally:
            request.cancel()

    def generate(self, prompt: str | list[int], **kw) -> GenerationResult:
        """Complete `prompt`; keyword arguments are the fields of `SamplingParams`."""
        params = SamplingParams(**_normalize(kw))
        for event in self.events(prompt, params, prompt_logprobs=params.echo and params.logprobs, deltas=False):
            result = event.result    # the one event without deltas: Done (a failure raises)
        if params.echo:
            prompt_text = prompt if isinstance(prompt, str) else self.decode(result.prompt_token_ids)
            result.text = prompt_text + result.text
        return result

    def stream(self, prompt: str | list[int], **kw) -> Iterator[str]:
        """Yield the completion's text as it is generated (whole characters only)."""
        params = SamplingParams(**_normalize(kw))
        if params.echo:
            yield prompt if isinstance(prompt, str) else self.decode(self.prompt_ids(prompt))
        for event in self.events(prompt, params):
            if isinstance(event, Delta) and event.text:
                yield event.text

    def chat(self, messages: list[dict], **kw) -> GenerationResult:
        return self.generate(self.apply_chat_template(messages), **kw)

    def chat_stream(self, messages: list[dict], **kw) -> Iterator[str]:
        return self.stream(self.apply_chat_template(messages), **kw)

    def prompt_logprobs(self, token_ids: list[int]) -> list[float | None]:
        """Log-probability of each prompt token given the ones before it; the first is None."""
        result = self.generate(token_ids, max_tokens=0, logprobs=True, echo=True)
        return [None] + [lp.logprob for lp in result.prompt_logprobs[1:]]


def _normalize(kw: dict) -> dict:
    """Accept a stop list (or one string) and unknown-keyword errors phrased for people."""
    allowed = SamplingParams.__dataclass_fields__
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise UserError(f"unknown generation option {unknown[0]!r}; allowed: {', '.join(allowed)}")
    stop = kw.get("stop")
    if stop is None:
        kw["stop"] = ()
    elif isinstance(stop, str):
        kw["stop"] = (stop,)
    else:
        kw["stop"] = tuple(stop)
    return kw
