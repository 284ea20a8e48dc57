"""Chat fine-tuning end to end: a base run, a conversations file, `lmforge run`, and a model whose
held-out assistant loss fell; mistakes are one line; a killed SFT run resumes exactly."""

import json

from conftest import lmforge
from test_train_resume import kill_after_step_20, losses_of_a_full_run, train_losses

WORDS = ["list", "tuple", "dict", "set", "string", "bytes", "integer", "float", "module", "class"]


def _conversations(path, n=60):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"Say the word {WORDS[i % 10]}."},
                                      {"role": "assistant", "content": f"{WORDS[i % 10]}"}]}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _recipe(tmp_path, base, data, **train):
    settings = {"objective": '"sft"', "batch_size": 4, "max_steps": 40, "optimizer": '"adamw"', "lr": 3e-3,
                "warmup_steps": 5, "eval_every": 10, "checkpoint_every": 10, "eval_batches": 2, "log_every": 1,
                "dtype": '"float32"', "threads": 1, **train}
    text = (f'name = "sft"\nseed = 3\n\n[data]\nconversations = "{data}"\n\n[model]\ninit_from = "{base}"\n\n'
            "[train]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()) +
            '\n[eval]\nsamples = 2\nsample_tokens = 8\n')
    path = tmp_path / "sft.toml"
    path.write_text(text)
    return path


def test_sft_lowers_the_held_out_assistant_loss_and_keeps_the_base_tokenizer(tiny_run, tmp_path):
    recipe = _recipe(tmp_path, tiny_run, _conversations(tmp_path / "chat.jsonl"))
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "run"
    result = json.loads((run / "eval" / "sft.json").read_text())
    assert result["objective"] == "sft" and result["test_conversations"] == 6
    assert result["sft_loss_after"] < result["sft_loss_before"] - 1.0
    assert len(result["samples"]) == 2 and {"prompt", "base", "tuned"} <= set(result["samples"][0])
    arena = [json.loads(line)["prompt"] for line in (run / "eval" / "arena_prompts.jsonl").read_text().splitlines()]
    assert len(arena) == 6 and arena[0] == result["samples"][0]["prompt"]     # every held-out prompt
    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == \
        (tiny_run / "tokenizer" / "tokenizer.json").read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["train"]["init_from"] == str(tiny_run)
    assert manifest["stages"]["train"]["truncated_examples"] == 0      # every example fits the window
    assert "Fine-tuned from" in (run / "model_card.md").read_text()
    assert "fine-tuned" in (run / "report.html").read_text()


def test_fine_tuning_mistakes_are_one_line(tiny_run, tmp_path):
    data = _conversations(tmp_path / "chat.jsonl")
    cases = [(_recipe(tmp_path, tmp_path / "nowhere", data), "not found"),
             (None, "chat.jsonl:2: invalid JSON"),
             (None, "model.d_model is taken from model.init_from")]
    for i, (recipe, message) in enumerate(cases):
        if i == 1:
            bad = tmp_path / "chat.jsonl"
            bad.write_text(bad.read_text().replace("\n", "\n{oops\n", 1))
            recipe = _recipe(tmp_path, tiny_run, bad)
        if i == 2:
            recipe = _recipe(tmp_path, tiny_run, _conversations(tmp_path / "chat.jsonl"))
            recipe.write_text(recipe.read_text().replace("[model]\n", "[model]\nd_model = 64\n"))
        out = lmforge("run", str(recipe), "--out", str(tmp_path / f"r{i}"))
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, \
            out.stderr[-500:]


def test_a_killed_sft_run_resumes_with_the_same_losses(tiny_run, tmp_path):
    assert_a_killed_run_resumes(tmp_path, _recipe(tmp_path, tiny_run, _conversations(tmp_path / "chat.jsonl"),
                                                  max_steps=30))


def assert_a_killed_run_resumes(tmp_path, recipe):
    """SIGKILL after step 20's checkpoint, --resume: the very losses of an uninterrupted run."""
    base = tmp_path / "prepared"
    assert lmforge("prepare", str(base), "--recipe", str(recipe)).returncode == 0
    full = losses_of_a_full_run(base, tmp_path / "full")
    killed = tmp_path / "killed"
    kill_after_step_20(base, killed)
    out = lmforge("train", str(killed), "--resume")
    assert out.returncode == 0 and "resuming at step 20" in out.stdout, out.stderr[-1000:]
    assert train_losses(killed) == full
