"""Chat templates: the Jinja template from tokenizer_config.json, rendered in a sandbox.

The template is data shipped with a model, so it runs in Jinja's immutable
sandbox, set up as Hugging Face's `apply_chat_template` sets up its own (blocks
trimmed, `break`/`continue` allowed), so a checkpoint's template renders the same
text here as there. Without one we fall back to lmforge's own chat format, the one
the fine-tuning stage writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lmforge.errors import UserError
from lmforge.tokenizer.specials import CHAT_TEMPLATE
ROLES = ("system", "user", "assistant")


class ChatTemplate:
    def __init__(self, source: str = CHAT_TEMPLATE, bos_token: str = "<|bos|>", eos_token: str = "<|eos|>"):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        self.template = env.from_string(source)
        self.bos_token, self.eos_token = bos_token, eos_token

    @classmethod
    def from_dir(cls, tokenizer_dir: Path) -> "ChatTemplate":
        config_path = tokenizer_dir / "tokenizer_config.json"
        if not config_path.is_file():
            return cls()
        config = json.loads(config_path.read_text())
        return cls(config.get("chat_template") or CHAT_TEMPLATE,
                   _token_str(config.get("bos_token"), "<|bos|>"), _token_str(config.get("eos_token"), "<|eos|>"))

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise UserError(f"messages[{i}] must be {{'role': one of {', '.join(ROLES)}, 'content': text}}")
        try:
            return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError as e:
            raise UserError(f"the chat template failed: {e}") from None


def _token_str(value, default: str) -> str:
    # HF configs store special tokens either as plain strings or as {"content": ...} objects
    if isinstance(value, dict):
        return value.get("content", default)
    return value if isinstance(value, str) else default
