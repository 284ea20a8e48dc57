"""Fine-tuning examples: every format read, rendered exactly as the chat template renders them, and
a loss mask that covers exactly the assistant's tokens (and its end-of-turn token)."""

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from conftest import SHARED_DATA
from lmforge.data.conversations import read_conversations, render, split
from lmforge.errors import UserError
from lmforge.infer.template import ChatTemplate
from lmforge.infer.tiny import sample_corpus
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.train import train_tokenizer

CHAT = {"messages": [{"role": "system", "content": "Answer briefly."},
                     {"role": "user", "content": "What does json.dumps do?"},
                     {"role": "assistant", "content": "It serialises an object to a JSON string."},
                     {"role": "user", "content": "And 3 * 14?"},
                     {"role": "assistant", "content": " 42, with a leading space.\n"}]}
ALPACA = [{"instruction": "Convert 45 kilometers to meters.", "input": "", "output": "45000 meters."},
          {"instruction": "Edit for grammar.", "input": "He go to the park.", "output": "He goes to the park."}]
PROMPT = {"prompt": "Complete: the quick brown", "completion": " fox."}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    docs = root / "documents.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample_corpus()))
    return train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=600), docs, root / "tokenizer")


def _files(tmp_path):
    (tmp_path / "chat.jsonl").write_text(json.dumps(CHAT) + "\n\n" + json.dumps(PROMPT) + "\n")
    (tmp_path / "alpaca.json").write_text(json.dumps(ALPACA))
    return [tmp_path / "chat.jsonl", tmp_path / "alpaca.json"]


def test_every_format_renders_as_the_template_with_the_mask_on_assistant_tokens(tmp_path, tokenizer):
    conversations = [c for f in _files(tmp_path) for c in read_conversations(f)]
    assert [len(c.messages) for c in conversations] == [5, 2, 2, 2]
    assert conversations[2].messages[0]["content"] == "Convert 45 kilometers to meters."
    assert conversations[3].messages[0]["content"] == "Edit for grammar.\n\nHe go to the park."
    assert conversations[1].where.endswith("chat.jsonl:3") and conversations[3].where.endswith("alpaca.json[1]")
    template = ChatTemplate()
    for c in conversations:
        ids, mask = render(c.messages, tokenizer)
        expected = tokenizer.encode(template.render(c.messages, add_generation_prompt=False),
                                    add_special_tokens=False).ids
        assert ids == expected and len(mask) == len(ids)
        trained = tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
        assert trained == "".join(m["content"] + "<|end|>" for m in c.messages if m["role"] == "assistant")
        assert not mask[0] and not mask[-1]            # <|bos|> and the template's last newline


# a checkpoint's own template, written the way Hugging Face templates are: block tags on their own
# lines (trimmed by the renderer), the special tokens from the config, a loop control
HF_STYLE = """{% for message in messages %}
    {% if message['role'] == 'system' %}
{{ bos_token }}[SYS] {{ message['content'] }}
    {% elif message['role'] == 'user' %}
[USER] {{ message['content'] }}
    {% else %}
[BOT] {{ message['content'] }}{{ eos_token }}
    {% endif %}
    {% if loop.index > 3 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
[BOT]
{% endif %}"""


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_a_checkpoints_template_renders_as_transformers_renders_it(tmp_path, tokenizer, generation_prompt):
    import transformers
    tok_dir = tmp_path / "tokenizer"
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(tok_dir)
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    config.update(chat_template=HF_STYLE, bos_token={"__type": "AddedToken", "content": "<s>", "special": True, "lstrip": False,
                                                       "rstrip": False, "normalized": False, "single_word": False}, eos_token="</s>")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(config))
    theirs = transformers.AutoTokenizer.from_pretrained(tok_dir)
    messages = CHAT["messages"]
    expected = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    assert "<s>[SYS] Answer briefly." in expected and "</s>" in expected and "42, with" not in expected
    assert ChatTemplate.from_dir(tok_dir).render(messages, add_generation_prompt=generation_prompt) == expected


def test_the_builtin_template_and_its_fallbacks(tmp_path):
    messages = CHAT["messages"][:2]
    want = "<|bos|><|system|>\nAnswer briefly.<|end|>\n<|user|>\nWhat does json.dumps do?<|end|>\n"
    assert ChatTemplate.from_dir(tmp_path).render(messages, add_generation_prompt=False) == want   # no config
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": 7}))            # no template in it
    fallback = ChatTemplate.from_dir(tmp_path)
    assert fallback.render(messages) == want + "<|assistant|>\n"
    assert (fallback.bos_token, fallback.eos_token) == ("<|bos|>", "<|eos|>")
    assert (ChatTemplate().bos_token, ChatTemplate().eos_token) == ("<|bos|>", "<|eos|>")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": {"special": True},
                                                                "eos_token": {"content": "</s>"}}))
    assert (ChatTemplate.from_dir(tmp_path).bos_token, ChatTemplate.from_dir(tmp_path).eos_token) == ("<|bos|>", "</s>")
    for bad in ([{"role": "robot", "content": "x"}], [{"role": "user", "content": 3}], ["text"]):
        with pytest.raises(UserError, match=r"^messages\[0\] must be \{'role': one of system, user, assistant, "
                                            r"'content': text\}$"):
            fallback.render(bad)
    with pytest.raises(UserError, match="^the chat template failed: access to attribute 'append' of 'list'"):
        ChatTemplate("{% set x = messages.append(1) %}").render(messages)      # the sandbox holds


def test_a_bad_example_is_an_error_naming_its_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    for lines, message in ((['{"prompt": "a", "completion": "b"}', "{oops"], "bad.jsonl:2: invalid JSON"),
                           ([json.dumps({"messages": [{"role": "robot", "content": "x"}]})], "role 'robot'"),
                           ([json.dumps({"messages": [{"role": "user", "content": "x"}]})], "no assistant turn"),
                           ([json.dumps({"text": "plain"})], "not a chat"),
                           ([""], "no examples")):
        bad.write_text("\n".join(lines) + "\n")
        with pytest.raises(UserError, match=message):
            read_conversations(bad)


def test_a_tokenizer_without_the_chat_tokens_is_refused():
    plain = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="lacks the chat tokens <\\|bos\\|>"):
        render(CHAT["messages"], plain)


def test_the_books_instruction_set_splits_85_10_5_and_every_example_has_targets(tokenizer):
    path = SHARED_DATA / "instruction-data.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared data not available)")
    conversations = read_conversations(path)
    assert [len(part) for part in split(conversations)] == [935, 110, 55]
    for c in conversations:
        _, mask = render(c.messages, tokenizer)
        assert sum(mask) >= 2, c.where                 # some content, and <|end|>


def test_records_in_no_chat_format_become_conversations_by_template(tmp_path):
    dialogues = tmp_path / "d.jsonl"
    dialogues.write_text(json.dumps({"dialogue": "A: hi\nB: hello", "summary": "They greet."}) + "\n" +
                         json.dumps({"dialogue": "A: bye", "summary": "A leaves."}) + "\n")
    got = read_conversations(dialogues, ("Dialogue:\n{dialogue}\nSummary:", "{summary}"))
    assert got[1].messages == [{"role": "user", "content": "Dialogue:\nA: bye\nSummary:"},
                               {"role": "assistant", "content": "A leaves."}]
    with pytest.raises(UserError, match=r"d.jsonl:1: no field 'text'"):
        read_conversations(dialogues, ("{text}", "{summary}"))
    en, de = tmp_path / "x.en", tmp_path / "x.de"
    en.write_text("A dog runs.\nTwo cats.\n")
    de.write_text("Ein Hund rennt.\nZwei Katzen.\n")
    pairs = read_conversations(en, ("English: {source}\nGerman:", "{target}"), target=de)
    assert [c.messages[1]["content"] for c in pairs] == ["Ein Hund rennt.", "Zwei Katzen."]
    assert pairs[1].where.endswith("x.en:2")
    de.write_text("Ein Hund rennt.\n")
    with pytest.raises(UserError, match="has 2 lines but .* has 1"):
        read_conversations(en, ("{source}", "{target}"), target=de)


def test_the_builtin_python_qa_set_holds_whole_modules_out():
    from lmforge.data.python_qa import NAME
    conversations = read_conversations(NAME)
    assert len(conversations) > 2000
    first = conversations[0].messages
    assert first[0]["content"].startswith(("What does `", "What is `")) and len(first[1]["content"]) >= 40
    modules = [c.where.split(":")[0] for c in conversations]
    train, test, _ = split(modules, (0.9, 0.05, 0.05))
    assert len(set(test) - set(train)) >= len(set(test)) - 1    # at most the boundary module is shared
