"""Exact resume after SIGKILL, fallback past a corrupt checkpoint, and 2-rank torchrun training."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import lmforge, tiny_corpus_dir, tiny_recipe

STEPS = 30
OVERRIDES = ["--set", f"train.max_steps={STEPS}", "--set", "train.log_every=1", "--set", "train.checkpoint_every=10",
             "--set", "train.keep_last=3", "--set", "train.threads=1", "--set", "train.batch_size=4",
             "--set", "train.grad_accum=2", "--set", "train.eval_every=10"]


def train_losses(run) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            assert rec["step"] not in out, f"step {rec['step']} logged twice"
            out[rec["step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    recipe = tiny_recipe(root, tiny_corpus_dir(root))
    run = root / "prepared"
    out = lmforge("prepare", str(run), "--recipe", str(recipe), *OVERRIDES)
    assert out.returncode == 0, out.stderr
    return recipe, run


def losses_of_a_full_run(base, run) -> dict[int, float]:
    """Copy the prepared run `base` to `run`, train it to the end: its loss at every step."""
    shutil.copytree(base, run)
    out = lmforge("train", str(run))
    assert out.returncode == 0, out.stderr
    return train_losses(run)


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    return losses_of_a_full_run(prepared[1], tmp_path_factory.mktemp("full") / "run")


def kill_after_step_20(base, run) -> None:
    """Copy the prepared run `base` to `run`, train it and SIGKILL it once step 20 is checkpointed."""
    shutil.copytree(base, run)
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge.cli", "train", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "step-000020" / "COMPLETE").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / f"step-{STEPS:06d}").exists(), "the kill came too late"


def test_sigkill_then_resume_gives_the_same_loss_sequence(prepared, uninterrupted, tmp_path):
    _, base = prepared
    run = tmp_path / "killed"
    kill_after_step_20(base, run)
    refused = lmforge("train", str(run))
    assert refused.returncode == 2 and "--resume" in refused.stderr

    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0, out.stderr
    assert "resuming at step 20" in out.stdout
    assert train_losses(run) == uninterrupted


def test_corrupt_checkpoint_is_named_and_skipped(prepared, uninterrupted, tmp_path):
    _, base = prepared
    run = tmp_path / "corrupt"
    shutil.copytree(base, run)
    assert lmforge("train", str(run)).returncode == 0
    ckpts = run / "checkpoints"
    shutil.rmtree(ckpts / f"step-{STEPS:06d}")                   # as if killed before the last save
    weights = ckpts / "step-000020" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])              # truncated on disk
    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0, out.stderr
    assert "skipping checkpoint" in out.stdout and "step-000020" in out.stdout
    assert "resuming at step 10" in out.stdout
    assert train_losses(run) == uninterrupted


def torchrun(*args):
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "lmforge.cli", *args], capture_output=True, text=True, env=env, timeout=600)


def assert_two_ranks_match(base, run, uninterrupted: dict) -> None:
    """Copy the prepared run `base` to `run`, train it with 2 ranks: the same losses as one
    process, up to float summation order (2e-3 nats per step)."""
    shutil.copytree(base, run)
    out = torchrun("train", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    two_ranks = train_losses(run)
    assert sorted(two_ranks) == sorted(uninterrupted)
    assert max(abs(two_ranks[s] - uninterrupted[s]) for s in two_ranks) < 2e-3


def two_ranks_then_resume_on_one(run) -> tuple[dict, dict]:
    """Train `run` with 2 ranks, drop its last checkpoint, resume in 1 process: both loss maps."""
    out = torchrun("train", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    two_ranks = train_losses(run)
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS:06d}")
    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0, out.stderr
    assert "resuming at step 20" in out.stdout
    return two_ranks, train_losses(run)


def test_two_ranks_match_one_process_and_resume_on_one(prepared, uninterrupted, tmp_path):
    # Same recipe, same global batch (4 x 2 accumulation = 2 ranks x 4): the same losses
    # up to float summation order. Tolerance: 2e-3 nats per step.
    _, base = prepared
    run = tmp_path / "ddp"
    shutil.copytree(base, run)
    ddp, resumed = two_ranks_then_resume_on_one(run)
    assert sorted(ddp) == sorted(uninterrupted)
    assert max(abs(ddp[s] - uninterrupted[s]) for s in ddp) < 2e-3
    assert max(abs(resumed[s] - uninterrupted[s]) for s in resumed) < 2e-3   # 2-rank checkpoint, 1 process


def test_fsdp_two_ranks_match_and_resume_in_one_process(prepared, uninterrupted, tmp_path):
    # FSDP2 shards parameters and optimizer state; its checkpoint gathers both, so it
    # resumes in a single process. Same tolerance as DDP: 2e-3 nats per step.
    recipe, _ = prepared
    run = tmp_path / "fsdp"
    out = lmforge("prepare", str(run), "--recipe", str(recipe), *OVERRIDES, "--set", "train.distributed=fsdp")
    assert out.returncode == 0, out.stderr
    sharded, resumed = two_ranks_then_resume_on_one(run)
    assert max(abs(sharded[s] - uninterrupted[s]) for s in sharded) < 2e-3
    assert max(abs(resumed[s] - sharded[s]) for s in resumed) < 2e-3
