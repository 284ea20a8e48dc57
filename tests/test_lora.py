"""LoRA: the adapter trains alone, merges into the same function, is saved in PEFT's layout that
PEFT itself applies to the Hugging Face export of the base, serves without merging, and resumes
exactly after SIGKILL."""

import json

import pytest
import torch

from conftest import lmforge
from test_finetune_sft import _conversations, _recipe, assert_a_killed_run_resumes

from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.models.lora import LoraSpec, add_lora, merge_lora

LORA = {"objective": '"sft"', "adapter": '"lora"', "lora_rank": 4, "lr": 1e-2,
        "lora_targets": '["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]'}


def test_merged_weights_compute_what_the_adapter_did():
    torch.manual_seed(0)
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=300, zero_init_out=False).resolved()).eval()
    names = add_lora(model, LoraSpec(rank=4, alpha=8, dropout=0.0, targets=["q_proj", "down_proj"]))
    assert len(names) == 2 * model.cfg.n_layer
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {f"{n}.lora_{ab}.weight" for n in names for ab in "AB"}
    ids = torch.randint(0, 300, (2, 24))
    plain = model(ids)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, 0, 0.5)            # a trained adapter: B is no longer zero
    adapted = model(ids)
    assert (adapted - plain).abs().max() > 1e-2         # the adapter changes the function ...
    merged = merge_lora(model)(ids)
    assert (merged - adapted).abs().max() < 1e-5        # ... and merging keeps it
    assert not any("lora" in n for n in model.state_dict())


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A random llama-mini (the Llama layout, which exports to transformers)."""
    return make_tiny_run(tmp_path_factory.mktemp("lora-base") / "base")


@pytest.fixture(scope="module")
def lora_run(base_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    recipe = _recipe(root, base_run, _conversations(root / "chat.jsonl"), **LORA)
    out = lmforge("run", str(recipe), "--out", str(root / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "run"


def test_a_lora_run_saves_only_the_adapter_and_lowers_the_loss(lora_run, base_run):
    best = lora_run / "checkpoints" / "best"
    assert not (best / "model.safetensors").exists()
    from safetensors.torch import load_file
    keys = load_file(str(best / "adapter_model.safetensors"))
    assert keys and all(k.startswith("base_model.model.model.layers.") and ".lora_" in k for k in keys)
    config = json.loads((best / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert config["base_model_name_or_path"] == str((base_run / "checkpoints" / "step-000000").resolve())
    result = json.loads((lora_run / "eval" / "sft.json").read_text())
    assert result["sft_loss_after"] < result["sft_loss_before"] - 0.5


def test_peft_applies_the_adapter_to_the_hugging_face_export(lora_run, base_run, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM
    from lmforge.models.io import load_model
    hf_dir = tmp_path / "hf"
    out = lmforge("export", str(base_run), "--format", "hf", "--out", str(hf_dir))
    assert out.returncode == 0, out.stderr
    base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = torch.randint(5, 500, (2, 20))
    with torch.no_grad():
        plain = base(ids).logits
        theirs = peft.PeftModel.from_pretrained(base, lora_run / "checkpoints" / "best").eval()
        got, want = theirs(ids).logits, load_model(lora_run)(ids)
    assert (got - want).abs().max() < 1e-4
    assert (plain - want).abs().max() > 1e-3     # the adapter is really there


def test_serving_and_merging_give_the_adapted_model(lora_run, tmp_path):
    from lmforge.infer.engine import Engine
    merged = tmp_path / "merged"
    out = lmforge("merge", str(lora_run), "--out", str(merged))
    assert out.returncode == 0, out.stderr
    prompt = [{"role": "user", "content": "Say the word dict."}]
    answers = []
    for path in (lora_run, merged):
        engine = Engine.from_run(path)
        try:
            answers.append(engine.chat(prompt, max_tokens=6, temperature=0.0).text)
        finally:
            engine.close()
    assert answers[0] == answers[1] and answers[0].strip()
    again = lmforge("merge", str(lora_run), "--out", str(merged))
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_killed_lora_run_resumes_with_the_same_losses(tiny_run, tmp_path):
    assert_a_killed_run_resumes(tmp_path, _recipe(tmp_path, tiny_run, _conversations(tmp_path / "chat.jsonl"),
                                                  max_steps=30, **LORA))
