"""Loading a model to evaluate: an lmforge run (or checkpoint) or a Hugging Face causal-LM directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lmforge.errors import UserError
from lmforge.eval.lm import EvalLM


# used when tokenizer_config.json names no BOS/EOS token
FALLBACK_PREFIX_TOKENS = ("<|bos|>", "<|eos|>", "<|endoftext|>", "<s>", "</s>")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def special_token_id(tok, config: dict, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, dict):   # {"content": "<|endoftext|>", ...}
            value = value.get("content")
        if isinstance(value, str) and tok.token_to_id(value) is not None:
            return tok.token_to_id(value)
    return None


class LmforgeLM(EvalLM):
    def __init__(self, path: str | Path, device: torch.device | None = None, batch_size: int = 8):
        from lmforge.infer.template import ChatTemplate
        from lmforge.models.io import find_weights, load_model
        from lmforge.models.registry import family_of
        from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer

        path = Path(path)
        self.device = device or default_device()
        self.batch_size = batch_size
        self.checkpoint = find_weights(path)
        tokenizer_dir = find_tokenizer_dir(path, self.checkpoint)
        self.run_dir = tokenizer_dir.parent
        self.name = path.name
        self.model = load_model(self.checkpoint, device=self.device)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.template = ChatTemplate.from_dir(tokenizer_dir)
        config_file = tokenizer_dir / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self.prefix_token_id = special_token_id(self.tokenizer, config, ("bos_token", "eos_token"))
        for name in FALLBACK_PREFIX_TOKENS:
            if self.prefix_token_id is None:
                self.prefix_token_id = self.tokenizer.token_to_id(name)
        self.max_length = self.model.cfg.max_seq_len
        self.generative = family_of(self.model).generative     # an encoder has no next-token likelihoods
        self._engine = None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def chat_prompt(self, text: str) -> str:
        rendered = self.template.render([{"role": "user", "content": text}], add_generation_prompt=True)
        return rendered.removeprefix(self.template.bos_token)    # scoring adds the prefix token itself

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def generate(self, prompt: str, *, max_tokens: int, stop: list[str], temperature: float,
                 seed: int) -> str:
        if self._engine is None:
            from lmforge.infer.engine import Engine
            self._engine = Engine(self.model, self.tokenizer, device=self.device)
        ids = self._engine.encode(prompt)
        room = self.max_length - max_tokens
        if len(ids) > room:
            # keep the prompt's end (and a leading BOS) so prompt + answer fit the context
            head = ids[:1] if ids[0] == self.prefix_token_id else []
            ids = head + ids[len(head):][-max(room - len(head), 1):]
        return self._engine.generate(ids, max_tokens=max_tokens, temperature=temperature,
                                     stop=[s for s in stop if s], seed=seed).text

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class HFCausalLM(EvalLM):
    def __init__(self, path: str | Path, device: torch.device | None = None, batch_size: int = 8):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        self.device = device or default_device()
        self.batch_size = batch_size
        self.name = path.name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, dtype=torch.float32).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load {path} as a Hugging Face causal LM: "
                            f"{str(e).splitlines()[0]}") from None
        tok = self.tokenizer
        self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.max_length = self._context_length()

    def _context_length(self) -> int:
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(self.model.config, attr, None)
            if value:
                return int(value)
        return 2048

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def chat_prompt(self, text: str) -> str:
        if not self.tokenizer.chat_template:
            raise UserError(f"{self.name}: the tokenizer has no chat template (drop --chat)")
        rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        bos = self.tokenizer.bos_token
        return rendered.removeprefix(bos) if bos else rendered

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).logits

    @torch.no_grad()
    def generate(self, prompt: str, *, max_tokens: int, stop: list[str], temperature: float,
                 seed: int) -> str:
        torch.manual_seed(seed)
        # keep the prompt's end so prompt + answer fit the context, as lm-eval does
        ids = self.encode(prompt)[-max(self.max_length - max_tokens, 1):]
        x = torch.tensor([ids], device=self.device)
        pad = self.tokenizer.pad_token_id
        out = self.model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
            do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
            top_k=None, top_p=None,
            pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def load_lm(path: str | Path, device: torch.device | None = None, batch_size: int = 8) -> EvalLM:
    """An lmforge run / checkpoint directory, or a Hugging Face causal-LM directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model not found: {path}")
    if (path / "checkpoints").is_dir() or (path / "model_config.json").is_file():
        return LmforgeLM(path, device, batch_size)
    if (path / "config.json").is_file():
        return HFCausalLM(path, device, batch_size)
    raise UserError(f"{path} is neither an lmforge run (no checkpoints/) "
                    "nor a Hugging Face model (no config.json)")
