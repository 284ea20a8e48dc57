"""Task files, data adapters, prompts and the scoring windows, on small synthetic data."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import UserError
from lmforge.eval.datasets import read_rows
from lmforge.eval.lm import EvalLM
from lmforge.eval.multiple_choice import evaluate_multiple_choice
from lmforge.eval.prompts import build_contexts, make_example
from lmforge.eval.tasks import load_task


def write_task(tmp_path, text: str, name: str = "t.toml"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_unknown_key_names_the_nearest(tmp_path):
    path = write_task(tmp_path, 'kind = "perplexity"\n[data]\npaht = "x.txt"\n')
    with pytest.raises(UserError, match="unknown key 'paht'.*'path'"):
        load_task(str(path))
    with pytest.raises(UserError, match="unknown task 'piqq'; did you mean 'piqa'"):
        load_task("piqq")


def test_mmlu_csv_adapter_and_fewshot(tmp_path):
    (tmp_path / "mmlu.csv").write_text(
        "What is 2+2?,3,4,5,6,B\nThe sky is?,green,red,blue,black,C\nWater is?,dry,wet,hot,cold,B\n")
    task = load_task(str(write_task(tmp_path, '''
kind = "multiple_choice"
[data]
path = "mmlu.csv"
columns = ["question", "A", "B", "C", "D", "answer"]
adapter = "mmlu"
[prompt]
context = "{question}\\n{options}\\nAnswer:"
choices = ["A", "B", "C", "D"]
gold = "answer"
num_fewshot = 1
''')))
    examples = [make_example(task, r) for r in read_rows(task)]
    assert [e.gold for e in examples] == [1, 2, 1]
    assert examples[0].context == "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    contexts = build_contexts(task, examples, examples, 1, seed=0, pool_holds_examples=True)
    for i, ctx in enumerate(contexts):
        shot, question = ctx.split("\n\n")
        assert question == examples[i].context and shot != examples[i].context + " " + \
            examples[i].answers[examples[i].gold]
        assert shot.endswith(("Answer: B", "Answer: C"))


def test_hellaswag_adapter(tmp_path):
    row = {"activity_label": "Baking", "ctx_a": "A woman mixes flour.", "ctx_b": "she",
           "endings": ["pours it [title] into a bowl.", "flies away."], "label": "0"}
    (tmp_path / "hs.jsonl").write_text(json.dumps(row) + "\n")
    task = load_task(str(write_task(tmp_path, '''
kind = "multiple_choice"
[data]
path = "hs.jsonl"
adapter = "hellaswag"
[prompt]
context = "{query}"
choices_field = "endings"
gold = "label"
''')))
    ex = make_example(task, read_rows(task)[0])
    assert ex.context == "Baking: A woman mixes flour. She"
    assert ex.answers == ["pours it. into a bowl.", "flies away."] and ex.gold == 0


class CharLM(EvalLM):
    """A fake model over characters whose log-probabilities are fixed per next character."""
    name, max_length, prefix_token_id = "char", 8, 0

    def __init__(self, logp: dict[str, float]):
        import torch
        self.table = torch.full((256,), -10.0)
        for ch, lp in logp.items():
            self.table[ord(ch)] = lp

    def encode(self, text):
        return [ord(c) for c in text]

    def forward(self, input_ids):
        return self.table.expand(*input_ids.shape, 256).clone()


def mc_task(tmp_path, path: str, choices: list[str]):
    """A multiple-choice task over `path`'s rows: context {q}, gold "label", no delimiter."""
    return load_task(str(write_task(tmp_path, f'''
kind = "multiple_choice"
[data]
path = "{path}"
[prompt]
context = "{{q}}"
choices = {json.dumps(choices)}
gold = "label"
target_delimiter = ""
''')))


class ChunkLM(EvalLM):
    """A fake model whose tokens are several characters long, with fixed log-probabilities per token."""
    name, max_length, prefix_token_id = "chunk", 8, 0
    VOCAB = {"Q": 1, "ab": 2, "cde": 3, "fgh": 4}

    def __init__(self, logits: dict[str, float]):
        import torch
        self.table = torch.full((8,), -10.0)
        for piece, value in logits.items():
            self.table[self.VOCAB[piece]] = value

    def encode(self, text):
        pieces, i = [], 0
        while i < len(text):
            n = 2 if text.startswith("ab", i) else 3 if text[i] in "cf" else 1
            pieces.append(self.VOCAB[text[i:i + n]])
            i += n
        return pieces

    def forward(self, input_ids):
        return self.table.expand(*input_ids.shape, 8).clone()


def test_acc_norm_divides_by_characters_not_tokens(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "Q", "a": "ab", "b": "cdefgh", "label": 1}) + "\n")
    task = mc_task(tmp_path, "d.jsonl", ["{a}", "{b}"])
    lm = ChunkLM({"ab": 0.0, "cde": -0.3, "fgh": -0.3})
    log_z = float(lm.table.logsumexp(0))
    ll_a, ll_b = -log_z, 2 * (-0.3 - log_z)            # one token of 2 characters, two tokens of 3
    assert ll_a > ll_b and ll_a / 1 > ll_b / 2 and ll_a / 2 < ll_b / 6   # per token "ab" wins, per character "cdefgh"
    examples = [make_example(task, r) for r in read_rows(task)]
    out = evaluate_multiple_choice(lm, task, examples, [e.context for e in examples])
    assert out["samples"][0]["loglikelihoods"] == pytest.approx([ll_a, ll_b])
    assert out["metrics"]["acc"]["value"] == 0.0 and out["metrics"]["acc_norm"]["value"] == 1.0


def test_fixed_choices_add_the_classification_view(tmp_path):
    rows = [{"q": "Q", "label": g} for g in (0, 1, 1)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = mc_task(tmp_path, "d.jsonl", ["ab", "cdefgh"])
    lm = ChunkLM({"ab": 0.0, "cde": -0.3, "fgh": -0.3})      # acc picks "ab" every time, acc_norm "cdefgh"
    examples = [make_example(task, r) for r in read_rows(task)]
    out = evaluate_multiple_choice(lm, task, examples, [e.context for e in examples])
    m = out["metrics"]
    assert m["acc"] == {"value": pytest.approx(1 / 3), "stderr": pytest.approx((1 / 3) ** 0.5 / 3 ** 0.5)}
    assert m["acc_norm"]["value"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == {"value": pytest.approx((0.5 + 0.0) / 2)}        # from acc's predictions
    assert out["confusion_matrix"] == {"labels": ["ab", "cdefgh"], "counts": [[1, 0], [2, 0]],
                                       "rows": "gold", "columns": "predicted"}
    first = out["samples"][0]
    assert set(first) == {"prompt", "choices", "gold", "loglikelihoods", "pred", "pred_norm"}
    assert (first["prompt"], first["choices"], first["gold"], first["pred"], first["pred_norm"]) == \
        ("Q", ["ab", "cdefgh"], 0, 0, 1)
    # a choice never gold nor predicted still has its row and column (the task's choices, in order)
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    three = mc_task(tmp_path, "f.jsonl", ["ab", "cdefgh", "Q"])
    ex3 = [make_example(three, r) for r in read_rows(three)]
    res3 = evaluate_multiple_choice(lm, three, ex3, [e.context for e in ex3])
    assert res3["confusion_matrix"]["labels"] == ["ab", "cdefgh", "Q"]
    assert res3["confusion_matrix"]["counts"] == [[1, 0, 0], [2, 0, 0], [0, 0, 0]]
    # different choices per example: no classification view
    (tmp_path / "e.jsonl").write_text(json.dumps({"q": "Q", "a": "ab", "b": "cdefgh", "label": 1}) + "\n" +
                                      json.dumps({"q": "Q", "a": "cdefgh", "b": "ab", "label": 0}) + "\n")
    varied = mc_task(tmp_path, "e.jsonl", ["{a}", "{b}"])
    ex = [make_example(varied, r) for r in read_rows(varied)]
    res = evaluate_multiple_choice(lm, varied, ex, [e.context for e in ex])
    assert "macro_f1" not in res["metrics"] and "confusion_matrix" not in res


def test_acc_norm_of_a_one_character_choice(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "Q", "label": 1}) + "\n")
    task = mc_task(tmp_path, "d.jsonl", ["Q", "ab"])
    lm = ChunkLM({"Q": 0.0, "ab": 0.0})       # equal log-likelihoods: per character, "ab" costs half
    examples = [make_example(task, r) for r in read_rows(task)]
    out = evaluate_multiple_choice(lm, task, examples, [e.context for e in examples])
    assert out["metrics"]["acc_norm"]["value"] == 1.0 and out["samples"][0]["pred_norm"] == 1


def test_windows_score_every_token_once():
    lm = CharLM({})
    for n_ctx, n_cont in [(1, 3), (5, 8), (3, 20), (1, 17)]:
        ctx, cont = list(range(100, 100 + n_ctx)), list(range(200, 200 + n_cont))
        windows = lm._windows(ctx, cont)
        assert [t for _, tgt in windows for t in tgt] == cont
        for inp, tgt in windows:
            assert 1 <= len(tgt) <= len(inp) <= lm.max_length


def test_acc_norm_divides_by_characters(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "Q", "a": "xx", "b": "yyyyyy", "label": 1}) + "\n")
    task = mc_task(tmp_path, "d.jsonl", ["{a}", "{b}"])
    # per character x costs more than y, but "yyyyyy" is three times longer:
    # acc picks "xx", acc_norm (log-likelihood per character) picks "yyyyyy"
    lm = CharLM({"x": -1.0, "y": -0.5})
    examples = [make_example(task, r) for r in read_rows(task)]
    out = evaluate_multiple_choice(lm, task, examples, [e.context for e in examples])
    assert out["metrics"]["acc"]["value"] == 0.0 and out["metrics"]["acc_norm"]["value"] == 1.0
    log_z = float(lm.table.logsumexp(0))   # forward returns logits; scores are log-softmaxed
    assert out["samples"][0]["loglikelihoods"] == pytest.approx([2 * (-1 - log_z), 6 * (-0.5 - log_z)])
