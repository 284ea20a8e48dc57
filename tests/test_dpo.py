"""DPO: the loss against a hand computation, log-probabilities over exactly the answer tokens, and
a run that raises the held-out reward accuracy with reference log-probabilities cached once."""

import json
import math

import pytest
import torch

from conftest import lmforge
from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train.objectives.dpo import dpo_loss, pad_sequences, sequence_logprobs


def test_the_loss_equals_a_hand_computation():
    loss, metrics = dpo_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]),
                             torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0]), beta=0.5)
    # pair 1: margin = 0.5 * (0.5) - 0.5 * (-0.5) = 0.5; pair 2: 0.5 * (-1) - 0.5 * (1) = -1
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert float(metrics["reward_accuracy"]) == 0.5 and float(metrics["reward_margin"]) == pytest.approx(-0.25)


def test_sequence_log_probabilities_cover_exactly_the_answer_tokens():
    torch.manual_seed(0)
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=50, max_seq_len=16, zero_init_out=False)).eval()
    ids = [1, 7, 8, 9, 10, 11]
    mask = [False, False, False, True, True, False]          # the answer is tokens 3 and 4
    batch = pad_sequences([(ids, mask), (ids[:4], mask[:4])], 16, pad_id=0)
    with torch.no_grad():
        got = sequence_logprobs(model, batch)
        logp = torch.log_softmax(model(torch.tensor([ids])), dim=-1)[0]
    assert float(got[0]) == pytest.approx(float(logp[2, 9] + logp[3, 10]), abs=1e-5)
    assert float(got[1]) == pytest.approx(float(logp[2, 9]), abs=1e-5)   # the same prefix, one answer token


def _pairs(path, n=40, identical=0):
    words = ["list", "tuple", "dict", "set", "bytes"]
    rows = [{"prompt": f"Name a Python type, number {i}.", "chosen": f"{words[i % 5]}, of course.",
             "rejected": "No."} for i in range(n)]
    rows += [{"prompt": "Same?", "chosen": "yes", "rejected": "yes"} for _ in range(identical)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _recipe(tmp_path, base, data, skip=False):
    text = (f'name = "dpo"\nseed = 5\n\n[data]\nconversations = "{data}"\nskip_identical_pairs = '
            f'{"true" if skip else "false"}\n\n[model]\ninit_from = "{base}"\n\n[train]\nobjective = "dpo"\n'
            'dpo_beta = 0.5\nbatch_size = 4\nmax_steps = 30\noptimizer = "adamw"\nlr = 1e-3\nwarmup_steps = 3\n'
            'eval_every = 10\ncheckpoint_every = 10\ndtype = "float32"\nthreads = 1\n')
    path = tmp_path / "dpo.toml"
    path.write_text(text)
    return path


def test_dpo_run_raises_held_out_reward_accuracy_and_caches_the_reference(tiny_run, tmp_path):
    data = _pairs(tmp_path / "pairs.jsonl", identical=2)
    refused = lmforge("run", str(_recipe(tmp_path, tiny_run, data)), "--out", str(tmp_path / "r0"))
    assert refused.returncode == 2 and "'chosen' equals 'rejected'" in refused.stderr and "pairs.jsonl:41" in refused.stderr
    out = lmforge("run", str(_recipe(tmp_path, tiny_run, data, skip=True)), "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["data"]["skipped_identical_pairs"] == 2 and manifest["stages"]["data"]["conversations"] == 40
    result = json.loads((run / "eval" / "dpo.json").read_text())
    assert result["reward_accuracy_before"] == 0.5 and result["reward_accuracy_after"] >= 0.75
    reference = json.loads((run / "tokens" / "dpo_reference.json").read_text())
    assert [len(reference[s]) for s in ("train", "test", "val")] == [34, 4, 2]
    stamp = (run / "tokens" / "dpo_reference.json").stat().st_mtime_ns
    again = lmforge("train", str(run), "--force")     # a second training start must not recompute the reference
    assert again.returncode == 0, again.stderr[-1000:]
    assert (run / "tokens" / "dpo_reference.json").stat().st_mtime_ns == stamp
