"""Training faults: a preemption signal ends the run with a checkpoint and status 75 and --resume
goes on with the very same losses; a checkpoint that cannot be written leaves the previous one
whole; changed token shards are refused; a second process on one run directory is refused, and a
killed one leaves no stale lock."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import lmforge, tiny_corpus_dir, tiny_recipe
from test_train_resume import losses_of_a_full_run, train_losses

STEPS = 60
OVERRIDES = ["--set", f"train.max_steps={STEPS}", "--set", "train.log_every=1", "--set", "train.checkpoint_every=20",
             "--set", "train.keep_last=5", "--set", "train.threads=1", "--set", "train.batch_size=4",
             "--set", "train.eval_every=20"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    run = root / "prepared"
    out = lmforge("prepare", str(run), "--recipe", str(tiny_recipe(root, tiny_corpus_dir(root))), *OVERRIDES)
    assert out.returncode == 0, out.stderr
    return run


def _signal_after_step_20(base, run, signum):
    shutil.copytree(base, run)
    proc = subprocess.Popen([sys.executable, "-m", "lmforge.cli", "train", str(run)],
                            env={**os.environ, "LMFORGE_NO_PROGRESS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "step-000020" / "COMPLETE").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_preemption_signal_checkpoints_and_resume_continues_exactly(prepared, tmp_path, signum):
    run = tmp_path / "run"
    status, stderr = _signal_after_step_20(prepared, run, signum)
    assert status == 75, stderr
    stopped = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "preempted"]
    assert len(stopped) == 1 and stopped[0]["signal"] == signal.Signals(signum).name
    step = stopped[0]["step"]
    assert 20 <= step < STEPS and (run / "checkpoints" / f"step-{step:06d}" / "COMPLETE").exists()
    assert stderr.strip().splitlines()[-1].startswith(f"lmforge: train: stopped by {signal.Signals(signum).name} "
                                                      f"at step {step}; checkpoint saved")
    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0 and f"resuming at step {step}" in out.stdout, out.stderr[-1000:]
    if signum == signal.SIGTERM:
        assert train_losses(run) == losses_of_a_full_run(prepared, tmp_path / "full")


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(prepared, tmp_path, monkeypatch):
    from lmforge import stages
    from lmforge.errors import UserError
    from lmforge.rundir import RunDir
    from lmforge.train import checkpoint
    real = checkpoint.save_weights
    calls = []

    def full_disk_after_step_20(*args, **kw):      # step 20 writes `best`, then step-000020
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(checkpoint, "save_weights", full_disk_after_step_20)
    monkeypatch.setenv("LMFORGE_NO_PROGRESS", "1")
    for policy in ("stop", "continue"):
        calls.clear()
        run_path = tmp_path / policy
        shutil.copytree(prepared, run_path)
        run = RunDir.open(run_path)
        recipe = run.load_recipe()
        recipe.train.checkpoint_failure = policy
        if policy == "stop":
            with pytest.raises(UserError, match=r"could not be written \(No space left on device\); the previous "
                                                r"checkpoint is intact"):
                stages.train(run, recipe)
        else:
            stages.train(run, recipe)
            assert run.stage_done("train")
        saved = sorted(p.name for p in (run_path / "checkpoints").iterdir())
        assert saved == ["best", "step-000020"]            # whole, and no half-written directory beside them
        assert checkpoint.verify(run_path / "checkpoints" / "step-000020") is None
        assert json.loads((run_path / "checkpoints" / "best" / "state.json").read_text())["step"] == 20


def test_changed_token_shards_are_refused_before_training(prepared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    shard = run / "tokens" / "train.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    out = lmforge("train", str(run))
    assert out.returncode == 2 and "train.bin does not match the sha256 the manifest recorded" in out.stderr
    assert not (run / "checkpoints").exists()


def test_one_process_per_run_directory_and_no_stale_lock(prepared, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; from lmforge.rundir import RunDir; "
                               "RunDir(Path(sys.argv[1])).lock(); print('held', flush=True); time.sleep(120)", str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = lmforge("train", str(run))
        assert out.returncode == 2 and f"in use by another lmforge process (pid {holder.pid})" in out.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    out = lmforge("train", str(run))
    assert out.returncode == 0, out.stderr[-500:]


@pytest.mark.slow
def test_a_preempted_two_rank_run_stops_together_and_resumes(tmp_path):
    run = tmp_path / "run"      # two ranks share the recipe's accumulation steps: grad_accum 2
    out = lmforge("prepare", str(run), "--recipe", str(tiny_recipe(tmp_path, tiny_corpus_dir(tmp_path))), *OVERRIDES,
                  "--set", "train.grad_accum=2")
    assert out.returncode == 0, out.stderr
    env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "lmforge.cli", "train", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "step-000020" / "COMPLETE").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:] if proc.poll() else ""
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)            # torchrun passes it on to both ranks
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    stopped = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "preempted"]
    assert len(stopped) == 1, stderr[-2000:]      # rank 0 logs once, for the step both ranks stopped after
    step = stopped[0]["step"]
    assert (run / "checkpoints" / f"step-{step:06d}" / "COMPLETE").exists()
    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0 and f"resuming at step {step}" in out.stdout, out.stderr[-1000:]
