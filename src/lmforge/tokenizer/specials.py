"""Special tokens and the chat template: the same strings in training, fine-tuning and serving."""

from __future__ import annotations

BOS, EOS, PAD, MASK = "<|bos|>", "<|eos|>", "<|pad|>", "<|mask|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
UNK = "<|unk|>"      # only for vocabularies that can miss a character (not byte-level BPE)

SPECIAL_TOKENS = [BOS, EOS, PAD, MASK, SYSTEM, USER, ASSISTANT, END]
STOP_TOKENS = (EOS, END)   # generation ends at either (end of a text / end of a chat turn)

# <|bos|>, then "<|role|>\ncontent<|end|>\n" per message; a generation prompt opens the assistant turn.
CHAT_TEMPLATE = (
    "{{ '<|bos|>' }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def render_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template in plain Python (what the Jinja template above produces)."""
    text = BOS + "".join(f"<|{m['role']}|>\n{m['content']}{END}\n" for m in messages)
    return text + (f"{ASSISTANT}\n" if add_generation_prompt else "")
