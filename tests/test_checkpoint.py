"""Checkpoint files in process: what a save writes and reads back, what verify says about each
kind of damage, and which directories rotation keeps."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train.checkpoint import rotate, save_checkpoint, verify


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return Transformer(LlamaConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())


def _save(root, model, step=5, **kw):
    state = {"step": step, "tokens": 640, "best_val_loss": 3.25}
    trainer_state = {"rng": torch.arange(8, dtype=torch.uint8), "optimizer": {"lr": torch.tensor([0.01])}}
    return save_checkpoint(root, step, model.state_dict(), model.cfg, kw.pop("trainer_state", trainer_state),
                           state, **kw)


def test_a_save_holds_weights_config_trainer_state_and_marker(tmp_path, model):
    ckpt = _save(tmp_path, model)
    assert ckpt == tmp_path / "step-000005"
    assert sorted(p.name for p in ckpt.iterdir()) == ["COMPLETE", "model.safetensors", "model_config.json",
                                                       "state.json", "trainer_state.pt"]
    saved = load_file(ckpt / "model.safetensors")
    for name, tensor in saved.items():
        assert torch.equal(tensor, model.state_dict()[name])
    assert json.loads((ckpt / "state.json").read_text()) == {"step": 5, "tokens": 640, "best_val_loss": 3.25}
    assert json.loads((ckpt / "model_config.json").read_text())["arch"] == "llama"
    restored = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    assert torch.equal(restored["rng"], torch.arange(8, dtype=torch.uint8))
    assert torch.equal(restored["optimizer"]["lr"], torch.tensor([0.01]))
    assert verify(ckpt) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]       # no temporary left behind


def test_named_and_stateless_saves(tmp_path, model):
    best = _save(tmp_path, model, name="best", trainer_state=None)
    assert best == tmp_path / "best" and not (best / "trainer_state.pt").exists()
    assert verify(best) is None
    again = _save(tmp_path, model, step=9, name="best", trainer_state=None)     # replaces the old one whole
    assert json.loads((again / "state.json").read_text())["step"] == 9


@pytest.mark.parametrize("damage, reason", [
    (lambda c: (c / "COMPLETE").unlink(), r"^incomplete \(no COMPLETE marker\)$"),
    (lambda c: (c / "model.safetensors").write_bytes(b"\x00" * 10), r"^unreadable \(SafetensorError: "),
    (lambda c: (c / "state.json").write_text("{"), r"^unreadable \(JSONDecodeError: Expecting property name "
                                                   r"enclosed in double quotes: line 1 column 2 \(char 1\)\)$"),
    (lambda c: (c / "model_config.json").write_text("nope"), r"^unreadable \(JSONDecodeError: "),
    (lambda c: (c / "trainer_state.pt").write_bytes(b"garbage"), r"^unreadable \(UnpicklingError: "),
    (lambda c: (c / "trainer_state.pt").write_bytes(b""), r"^unreadable \(EOFError: \)$"),     # no message to quote
    (lambda c: (c / "model.safetensors").unlink(), r"^unreadable \((FileNotFoundError|OSError|SafetensorError)"),
])
def test_verify_names_each_kind_of_damage(tmp_path, model, damage, reason):
    ckpt = _save(tmp_path, model)
    damage(ckpt)
    assert pytest.importorskip("re").search(reason, verify(ckpt) or "")


class NotATensor:
    """Anything but tensors and plain containers: a trainer state must never unpickle it."""


def test_verify_loads_trainer_state_as_weights_only(tmp_path, model):
    ckpt = _save(tmp_path, model, trainer_state={"object": NotATensor()})
    reason = verify(ckpt)
    with pytest.raises(Exception) as refused:
        torch.load(ckpt / "trainer_state.pt", weights_only=True)
    first_line = str(refused.value).splitlines()[0]
    assert len(first_line) > 120 and reason == f"unreadable (UnpicklingError: {first_line[:120]})"


def test_a_lora_checkpoint_holds_the_adapter_only(tmp_path, model):
    from lmforge.models.lora import LoraSpec, add_lora
    spec = LoraSpec(rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "v_proj"], base=str(tmp_path / "base"))
    add_lora(model, spec)
    ckpt = save_checkpoint(tmp_path / "ckpts", 3, model.state_dict(), model.cfg, None, {"step": 3}, adapter=spec)
    assert sorted(p.name for p in ckpt.iterdir()) == ["COMPLETE", "adapter_config.json", "adapter_model.safetensors",
                                                       "model_config.json", "state.json"]
    assert all("lora_" in name for name in load_file(ckpt / "adapter_model.safetensors"))
    assert verify(ckpt) is None


def test_verify_reads_an_adapter_checkpoints_own_weights(tmp_path, model):
    ckpt = _save(tmp_path, model)
    (ckpt / "model.safetensors").rename(ckpt / "adapter_model.safetensors")
    assert verify(ckpt) is None                                  # found by its adapter name
    (ckpt / "adapter_model.safetensors").write_bytes(b"\x01" * 8)
    assert verify(ckpt).startswith("unreadable (SafetensorError")


def test_rotation_keeps_the_newest_and_clears_interrupted_saves(tmp_path, model):
    for step in (1, 2, 3, 4):
        _save(tmp_path, model, step=step, trainer_state=None)
    _save(tmp_path, model, name="best", trainer_state=None)
    (tmp_path / ".step-000005.abc123").mkdir()                   # a save killed half-way
    (tmp_path / ".keep-me").write_text("a file, not a save")
    rotate(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep-me", "best", "step-000003", "step-000004"]
