"""The fine-tuning objectives in process: which objective a recipe gets, DPO's and classification's
batches and losses against computations written out here, one example at a time."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.bert import BertConfig
from lmforge.models.classifier import classify_logits
from lmforge.models.llama import LlamaConfig
from lmforge.models.registry import build_model
from lmforge.tokenizer.load import load_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.train.objectives import DPO, SFT, CausalLM, Classify, MaskedLM, build_objective

V = 40


def tiny_llama(**kw):
    torch.manual_seed(0)
    return build_model(LlamaConfig(preset="tiny", vocab_size=V, max_seq_len=16, **kw).resolved())


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(make_tiny_run(tmp_path_factory.mktemp("run")) / "tokenizer")


def test_build_objective_gives_each_name_its_settings(tokenizer):
    model = tiny_llama()
    cfg = TrainConfig(dpo_beta=0.3, seq_len=12, mlm_probability=0.2, whole_word_masking=True)
    pad, bos = tokenizer.token_to_id("<|pad|>"), tokenizer.token_to_id("<|bos|>")
    causal = build_objective("causal_lm", model, tokenizer, cfg)
    assert isinstance(causal, CausalLM) and causal.bos_id == bos and not causal.recurrent
    pairs = {"train": [], "val": [], "train_reference": [], "val_reference": []}
    dpo = build_objective("dpo", model, tokenizer, cfg, pairs)
    assert isinstance(dpo, DPO) and (dpo.beta, dpo.pad_id) == (0.3, pad)
    long_example = ([1] * 13, [True] * 13)
    sft = build_objective("sft", model, tokenizer, cfg, {"train": [long_example], "val": []})
    assert isinstance(sft, SFT) and sft.pad_id == pad and sft.summary() == {"truncated_examples": 1}
    classify = build_objective("classify", model, tokenizer, cfg, {"train": [([1] * 12, 0), ([1] * 13, 1)],
                                                                   "val": []})
    assert isinstance(classify, Classify) and classify.summary() == {"truncated_examples": 1}   # 13 > seq_len
    no_seq_len = build_objective("classify", model, tokenizer, TrainConfig(), {"train": [([1] * 16, 0)], "val": []})
    assert no_seq_len.summary() == {"truncated_examples": 0}          # the model's context, 16
    bert = build_model(BertConfig(preset="bert-tiny", vocab_size=tokenizer.get_vocab_size(), max_seq_len=16).resolved())
    mlm = build_objective("masked_lm", bert, tokenizer, cfg)
    assert isinstance(mlm, MaskedLM) and mlm.probability == 0.2 and mlm.starts is not None   # whole words
    with pytest.raises(UserError, match=r"^train.objective = 'masked_lm' cannot train model.arch = 'llama' "
                                        r"\(it trains: causal_lm, sft, dpo, classify\)$"):
        build_objective("masked_lm", model, tokenizer, cfg)


def _pairs():
    g = torch.Generator().manual_seed(1)
    out = []
    for n_prompt, n_chosen, n_rejected in ((3, 4, 2), (2, 5, 5), (4, 1, 3), (1, 2, 6), (3, 3, 3)):
        prompt = torch.randint(3, V, (n_prompt,), generator=g).tolist()
        def render(n):
            answer = torch.randint(3, V, (n,), generator=g).tolist()
            return prompt + answer, [False] * n_prompt + [True] * n
        out.append((render(n_chosen), render(n_rejected)))
    return out


@torch.no_grad()
def _answer_logprob(model, ids, mask) -> float:
    """Sum of log p(token) over the answer's tokens, one sequence, written out."""
    logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)) if mask[t])


def test_dpo_batches_and_loss_equal_the_formula_pair_by_pair():
    model = tiny_llama().eval()
    pairs = _pairs()
    reference = [[-10.0 - i, -12.0 + i] for i in range(len(pairs))]
    obj = DPO(pairs, pairs[:3], reference, reference[:3], pad_id=0, beta=0.5)
    batch = obj.train_batches(None, seq_len=16, batch_size=2, seed=7).get(0, 0)
    rows = batch["input_ids"].tolist()
    # the first half of the rows are chosen answers, the second half the same pairs' rejected ones
    chosen = [next(i for i, p in enumerate(pairs) if p[0][0] == r[:len(p[0][0])]) for r in rows[:2]]
    assert [rows[2 + k][:len(pairs[i][1][0])] for k, i in enumerate(chosen)] == [pairs[i][1][0] for i in chosen]
    assert batch["reference"].tolist() == [reference[i] for i in chosen]
    with torch.no_grad():
        loss, metrics = obj.loss(model, batch)
    margins = []
    for i in chosen:
        (c_ids, c_mask), (r_ids, r_mask) = pairs[i]
        pc, pr = _answer_logprob(model, c_ids, c_mask), _answer_logprob(model, r_ids, r_mask)
        margins.append(0.5 * ((pc - reference[i][0]) - (pr - reference[i][1])))
    margins = torch.tensor(margins)
    assert float(loss) == pytest.approx(float(-F.logsigmoid(margins).mean()), abs=1e-5)
    assert float(metrics["reward_margin"]) == pytest.approx(float(margins.mean()), abs=1e-5)
    assert float(metrics["reward_accuracy"]) == float((margins > 0).float().mean())
    val = obj.val_batches(None, seq_len=16, n_windows=0, batch_size=2, seed=0)
    assert [len(b["reference"]) for b in val] == [2, 1]
    assert torch.cat([b["reference"] for b in val]).tolist() == reference[:3]


def test_classification_batches_and_loss_equal_one_example_at_a_time():
    model = build_model(replace(LlamaConfig(preset="tiny", vocab_size=V, max_seq_len=16).resolved(),
                                labels=["a", "b", "c"])).eval()
    g = torch.Generator().manual_seed(2)
    examples = [(torch.randint(3, V, (n,), generator=g).tolist(), n % 3) for n in (3, 7, 5, 9, 4, 6)]
    obj = Classify(examples, examples[:5], pad_id=0, seq_len=8)
    assert obj.summary() == {"truncated_examples": 2}                 # 9 > 8 counted twice (train and val)
    batch = obj.train_batches(None, seq_len=8, batch_size=3, seed=1).get(0, 0)
    with torch.no_grad():
        loss, metrics = obj.loss(model, batch)
    losses, hits = [], []
    for row, mask, label in zip(batch["input_ids"], batch["attention_mask"], batch["label"]):
        ids = row[mask.bool()].tolist()
        assert (ids, int(label)) in [(e[:8], lab) for e, lab in examples]
        with torch.no_grad():
            logits = classify_logits(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        losses.append(float(F.cross_entropy(logits[None], label[None])))
        hits.append(float(int(logits.argmax()) == int(label)))
    assert float(loss) == pytest.approx(sum(losses) / 3, abs=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(sum(hits) / 3)
    sample = obj.val_batches(None, seq_len=8, n_windows=3, batch_size=2, seed=4)
    again = obj.val_batches(None, seq_len=8, n_windows=3, batch_size=2, seed=4)
    assert [len(b["label"]) for b in sample] == [2, 1]
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(sample, again))
    everything = obj.val_batches(None, seq_len=8, n_windows=0, batch_size=2, seed=4)
    assert sorted(int(x) for b in everything for x in b["label"]) == sorted(lab for _, lab in examples[:5])


def test_sft_validation_batches_hold_every_validation_answer_once():
    g = torch.Generator().manual_seed(3)
    val = []
    for n_prompt, n_answer in ((3, 4), (5, 2), (2, 6), (4, 4), (6, 3)):
        ids = torch.randint(3, V, (n_prompt + n_answer,), generator=g).tolist()
        val.append((ids, [False] * n_prompt + [True] * n_answer))
    obj = SFT([], val, pad_id=0, seq_len=10)
    batches = obj.val_batches(None, seq_len=10, n_windows=0, batch_size=2, seed=0)
    labelled = [t for b in batches for t in b["labels"][b["labels"] != -100].tolist()]
    expected = [ids[t] for ids, mask in val for t in range(1, len(ids)) if mask[t]]
    assert sorted(labelled) == sorted(expected) and len(labelled) == len(expected)
    assert all(b["input_ids"].shape[1] == 10 for b in batches) and all(len(b["input_ids"]) <= 2 for b in batches)


def test_build_objective_hands_over_the_examples_and_the_recurrence(tokenizer):
    from lmforge.models.rnn.config import RNNConfig
    from lmforge.models.rnn.model import RecurrentLM
    rnn = RecurrentLM(RNNConfig(arch="gru", n_layer=1, d_model=16, vocab_size=V, dropout=0.0))
    assert build_objective("causal_lm", rnn, tokenizer, TrainConfig()).recurrent is True
    pairs = {"train": ["t"], "val": ["v"], "train_reference": [[1.0, 2.0]], "val_reference": [[3.0, 4.0]]}
    dpo = build_objective("dpo", tiny_llama(), tokenizer, TrainConfig(), pairs)
    assert (dpo.train, dpo.val, dpo.train_reference, dpo.val_reference) == (["t"], ["v"], [[1.0, 2.0]], [[3.0, 4.0]])
    classify = build_objective("classify", tiny_llama(), tokenizer, TrainConfig(), {"train": [([1], 0)], "val": []})
    assert classify.pad_id == tokenizer.token_to_id("<|pad|>") and classify.train == [([1], 0)]
