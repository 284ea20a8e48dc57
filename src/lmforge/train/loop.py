"""The one training loop, shared by every objective.

    for each step:  lr from the schedule -> grad_accum micro-batches under autocast
                    -> clip -> optimizer step(s) -> log -> maybe validate / checkpoint

What makes it trustworthy:
  * the batch at step s depends only on (seed, s), and the checkpoint holds the
    optimizer, RNG and elapsed-time state, so a run killed at any moment resumes
    with the very same loss sequence on CPU;
  * the schedule runs on "progress" (steps done / max_steps, or train seconds /
    time_budget_s), so a wall-clock-budgeted run still warms up and decays properly;
  * validation uses a fixed sample, so curves from different runs compare;
  * SIGTERM or SIGUSR1 (a cluster's preemption notice) ends the run at the next step
    boundary with a checkpoint, every rank at the same step, by raising `Preempted`;
  * a checkpoint that cannot be written (a full disk) leaves the previous one whole and
    stops the run, or is skipped with `train.checkpoint_failure = "continue"`.
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from lmforge import atomic, progress
from lmforge.cache import code_fingerprint, machine_key
from lmforge.errors import UserError
from lmforge.models import lora
from lmforge.models.io import check_arch, load_adapter_weights, read_weights
from lmforge.models.registry import family_of
from lmforge.train import checkpoint, distributed, optim
from lmforge.train.autocompile import AutoCompile, Decision, use_kernel_cache
from lmforge.train.config import TrainConfig
from lmforge.train.mfu import fastest_autocast_dtype, flops_per_token, measured_peak_flops
from lmforge.train.objectives import CausalLM, Objective


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step` (resume with --resume)."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step = signum, step


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0           # wall time spent in training steps (validation excluded)
    best_val_loss: float = math.inf
    evals_since_best: int = 0
    val_history: list = field(default_factory=list)   # [(step, train_seconds, val_loss)]


class Trainer:
    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, batches, val_batches: list[dict], *,
                 seed: int, ckpt_dir: Path | None = None, log: Callable[[dict], None] | None = None,
                 dist: distributed.DistInfo | None = None, objective: Objective | None = None):
        """batches: get(step, micro) -> batch dict (from `objective.train_batches`); val_batches:
        the fixed validation sample (`objective.val_batches`). The default objective is causal LM."""
        self.cfg = cfg
        self.dist = dist or distributed.DistInfo()
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.eager_step_model = self.step_model = distributed.wrap(self.model, self.dist, cfg.distributed)
        self.family = family_of(model)
        self.batches = batches
        self.val_batches = val_batches
        self.seed = seed
        self.ckpt_dir = ckpt_dir
        self.log = log if (log is not None and self.dist.is_main) else (lambda record: None)
        self.objective = objective or CausalLM(recurrent=self.family.recurrent)
        self.state = TrainState()
        if cfg.dtype == "auto":
            self.autocast_dtype = fastest_autocast_dtype(self.device)
        else:
            self.autocast_dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else None
        self.optimizers = optim.build_optimizers(self.model, cfg, ns_dtype=fastest_autocast_dtype(self.device))
        optim.set_lr(self.optimizers, 1.0)   # records each group's initial_lr, so saved and fresh groups match
        n_nonembed = sum(p.numel() for p in self.model.parameters()) - self.model.num_lookup_params()
        attention_layers = 0 if self.family.recurrent else model.cfg.n_layer
        self.flops_per_token = flops_per_token(n_nonembed, batches.seq_len, attention_layers, model.cfg.d_model)
        self._peak = None
        self.max_seconds: float | None = None
        self._last_step_seconds = 0.0
        self.on_validate: Callable[[int], None] | None = None   # called with the step after each validation
        self.autocompile = (AutoCompile(self._compile_key(batches), self.autocast_dtype)
                            if cfg.compile == "auto" else None)
        self.compile_record: dict | None = None      # what was decided about torch.compile, and why
        if cfg.compile is True:
            self._set_compiled(True)
            self.compile_record = asdict(Decision(True, "train.compile = true", source="recipe"))

    # ------------------------------------------------------------------ compile
    def _compile_key(self, batches) -> str:
        c = self.model.cfg
        shape = tuple(getattr(c, k, None) for k in ("arch", "n_layer", "d_model", "n_head", "kv_heads", "ff_dim",
                                                     "mlp", "qk_norm", "vocab_size", "ngram_orders"))
        adapter = self.cfg.lora_rank if lora.has_lora(self.model) else 0
        return machine_key("train-step", torch.__version__, code_fingerprint(), self.device, shape, batches.global_batch,
                           batches.seq_len, self.cfg.grad_accum, self.autocast_dtype, self.cfg.distributed,
                           self.dist.world, type(self.objective).__name__, adapter)

    def _set_compiled(self, on: bool) -> None:
        if on:
            use_kernel_cache()
            self.step_model = torch.compile(self.eager_step_model)
        else:
            self.step_model = self.eager_step_model

    def _steps_left(self, step_seconds: float) -> float:
        cfg, st = self.cfg, self.state
        steps = max(cfg.max_steps - st.step, 0) if cfg.time_budget_s <= 0 else math.inf
        return min(steps, max(self._time_limit() - st.train_seconds, 0.0) / max(step_seconds, 1e-9))

    def _follow_autocompile(self, action: str | None) -> None:
        """Act on rank 0's compile decision: every rank runs the same graph and stops asking at the
        same step, so the ranks' collectives stay paired."""
        mine = 0.0
        if self.dist.is_main:
            mine = {None: 0, "compile": 1, "eager": 2}[action] + (4 if self.autocompile.decision is not None else 0)
        code = int(distributed.max_across_ranks(float(mine), self.dist))
        if code % 4:
            self._set_compiled(code % 4 == 1)
        if code >= 4:
            self.compile_record = self.autocompile.record() or {"reason": "decided on rank 0"}
            self.log({"kind": "compile", "step": self.state.step, **self.compile_record})

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype)

    def _progress(self) -> float:
        if self.cfg.time_budget_s > 0:
            return self.state.train_seconds / self.cfg.time_budget_s
        return self.state.step / self.cfg.max_steps

    def _time_limit(self) -> float:
        """Training seconds this run may spend: the recipe's budget, and fit's max_seconds."""
        return min(self.cfg.time_budget_s if self.cfg.time_budget_s > 0 else math.inf,
                   self.max_seconds if self.max_seconds is not None else math.inf)

    def _finished(self) -> bool:
        limit = self._time_limit()
        spent, steps = self.state.train_seconds, self.state.step
        # a wall-clock run ends within its budget: it stops when one more step would overrun it.
        # A resumed run has not timed a step yet, so it expects the average of the earlier ones.
        next_step = self._last_step_seconds or (spent / steps if steps else 0.0)
        over = spent >= limit or spent + next_step > limit
        done = 1.0 if self._progress() >= 1.0 or over else 0.0
        return distributed.max_across_ranks(done, self.dist) >= 1.0   # ranks agree on the last step

    def peak_flops(self) -> float:
        if self._peak is None:
            self._peak = measured_peak_flops(self.autocast_dtype or torch.float32, self.device.split(":")[0])
        return self._peak

    def _on_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    @torch.no_grad()
    def validate(self) -> tuple[float, dict[str, float]]:
        """Mean validation loss and metrics over the fixed sample, weighted by rows."""
        self.model.eval()
        total, n, sums = 0.0, 0, {}
        for batch in self.val_batches:
            rows = batch["input_ids"].shape[0]
            with self._autocast():
                loss, metrics = self.objective.loss(self.model, self._on_device(batch))
            total += float(loss) * rows
            n += rows
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * rows
        self.model.train()
        return total / max(n, 1), {k: v / max(n, 1) for k, v in sums.items()}

    # ------------------------------------------------------------------ checkpoints
    def save(self, name: str | None = None, with_state: bool = True) -> None:
        if self.ckpt_dir is None:
            return
        weights = distributed.full_state_dict(self.model, self.dist, self.cfg.distributed)
        trainer_state = None
        if with_state:
            fmt, states = distributed.optimizer_states(self.model, self.optimizers, self.dist, self.cfg.distributed)
            trainer_state = {"optimizer_format": fmt, "optimizers": states, "torch_rng": torch.get_rng_state(),
                             "objective": distributed.merge_across_ranks(self.objective.state_dict(), self.dist)}
        if self.dist.is_main:
            state = {k: v for k, v in vars(self.state).items()}
            state["seed"] = self.seed
            try:
                checkpoint.save_checkpoint(self.ckpt_dir, self.state.step, weights, self.model.cfg, trainer_state,
                                           state, name=name, adapter=getattr(self.model, "lora", None))
            except OSError as e:       # the temporary directory is gone; what was saved before is whole
                what = f"checkpoint {name or 'at step %d' % self.state.step} could not be written ({e.strerror or e})"
                if self.cfg.checkpoint_failure == "stop":
                    raise UserError(f"{what}; the previous checkpoint is intact") from None
                print(f"lmforge: {what}; the previous checkpoint is intact, training goes on", flush=True)
                return
            if name is None:
                checkpoint.rotate(self.ckpt_dir, self.cfg.keep_last)
        distributed.barrier(self.dist)

    def resume(self) -> int | None:
        """Load the newest good checkpoint; report broken ones by name. Returns the step or None."""
        if self.ckpt_dir is None:
            return None
        for ckpt in reversed(checkpoint.list_steps(self.ckpt_dir)):
            problem = checkpoint.verify(ckpt)
            if problem:
                if self.dist.is_main:
                    print(f"lmforge: skipping checkpoint {ckpt}: {problem}", flush=True)
                continue
            self._load(ckpt)
            return self.state.step
        return None

    def _load(self, ckpt: Path) -> None:
        check_arch(ckpt, self.model.cfg.arch)
        if lora.has_lora(self.model):
            load_adapter_weights(self.model, lora.read_adapter(ckpt)[1], ckpt)
        elif self.dist.enabled and self.cfg.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
            set_model_state_dict(self.model, read_weights(ckpt, self.model.cfg),
                                 options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(read_weights(ckpt, self.model.cfg))
        trainer_state = torch.load(ckpt / "trainer_state.pt", weights_only=True, map_location=self.device)
        distributed.load_optimizer_states(self.model, self.optimizers,
                                          trainer_state.get("optimizer_format", "native"), trainer_state["optimizers"])
        torch.set_rng_state(trainer_state["torch_rng"].cpu())
        self.objective.load_state_dict(trainer_state.get("objective", {}))
        raw = json.loads((ckpt / "state.json").read_text())
        raw.pop("seed", None)
        self.state = TrainState(**raw)

    # ------------------------------------------------------------------ the loop
    def fit(self, max_seconds: float | None = None) -> TrainState:
        """Train to the end of the schedule (or stop early at `max_seconds` of training time).
        Raises `Preempted` after checkpointing when SIGTERM or SIGUSR1 arrives."""
        received = []
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
        # Zero-initialised projections and small updates make subnormal floats, which CPUs
        # process many times slower; flushing them to zero measured ~20% faster steps. The flag is
        # process-wide, so it is put back afterwards (other code in the process may need subnormals).
        torch.set_flush_denormal(True)
        try:
            return self._fit(max_seconds, received)
        finally:
            torch.set_flush_denormal(False)
            for s, handler in handlers.items():
                signal.signal(s, handler)

    def _fit(self, max_seconds: float | None, received: list[int]) -> TrainState:
        self.max_seconds = max_seconds
        cfg, st = self.cfg, self.state
        self.model.train()
        total = cfg.time_budget_s if cfg.time_budget_s > 0 else cfg.max_steps
        unit = "s" if cfg.time_budget_s > 0 else "step"
        bar = progress.bar(total=total, desc="train", unit=unit,
                           bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} " + unit +
                                      " [{elapsed}<{remaining}{postfix}]")
        bar.update(st.train_seconds if cfg.time_budget_s > 0 else st.step)
        tokens_per_step = self.batches.global_batch * self.batches.seq_len
        window_t0, window_tokens = time.perf_counter(), 0
        stopped_early = False
        if self.autocompile is not None:
            self._follow_autocompile(self.autocompile.start(self._steps_left))
        while not self._finished():
            t0 = time.perf_counter()
            scale = optim.lr_multiplier(cfg, st.step, self._progress())
            optim.set_lr(self.optimizers, scale)
            try:
                loss_sum = self._accumulate(st.step)
            except Exception as e:
                if self.step_model is self.eager_step_model or self.cfg.compile is True or self.dist.enabled:
                    raise
                # the first compiled step failed to compile (no C++ compiler, an unsupported op):
                # this run goes on eagerly, and the step is taken again
                self.model.zero_grad(set_to_none=True)
                self._set_compiled(False)
                self.autocompile.fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300])
                self._follow_autocompile(None)      # records the failure, even over a cached decision
                loss_sum = self._accumulate(st.step)
            if not math.isfinite(loss_sum):
                raise UserError(f"loss became {loss_sum} at step {st.step}; lower train.lr or enable grad_clip")
            grad_norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                         if cfg.grad_clip > 0 else None)
            for opt in self.optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
            dt = self._last_step_seconds = time.perf_counter() - t0
            st.step += 1
            st.tokens += tokens_per_step
            st.train_seconds += dt
            if self.autocompile is not None and self.compile_record is None:
                self._follow_autocompile(self.autocompile.after_step(dt, self._steps_left(dt)))
            window_tokens += tokens_per_step
            bar.update(min(dt, max(total - bar.n, 0)) if cfg.time_budget_s > 0 else 1)

            if st.step % cfg.log_every == 0 or st.step == 1:
                now = time.perf_counter()
                tps = window_tokens / max(now - window_t0, 1e-9)
                window_t0, window_tokens = now, 0
                loss_avg = distributed.mean_across_ranks(loss_sum, self.dist)
                record = {"kind": "train", "step": st.step, "loss": round(loss_avg, 6),
                          "lr": self.optimizers[-1].param_groups[0]["lr"],
                          "grad_norm": None if grad_norm is None else round(float(grad_norm), 4),
                          "tokens": st.tokens, "tokens_per_s": round(tps, 1),
                          "mfu": round(tps * self.flops_per_token / (self.peak_flops() * self.dist.world), 4),
                          "peak_mem_mb": _peak_memory_mb(self.device), "train_seconds": round(st.train_seconds, 3)}
                self.log(record)
                bar.set_postfix(loss=f"{loss_avg:.3f}", tok_s=f"{tps:,.0f}")

            signum = int(distributed.max_across_ranks(float(received[0] if received else 0), self.dist))
            if signum:                  # every rank stops after the same step
                self.save()
                self.log({"kind": "preempted", "step": st.step, "signal": signal.Signals(signum).name})
                bar.close()
                raise Preempted(signum, st.step)
            last = self._finished()
            if (cfg.eval_every and st.step % cfg.eval_every == 0) or last:
                stopped_early = self._validate_and_keep_best()
            if (cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0) or last or stopped_early:
                self.save()
            if stopped_early:
                break
        if not st.val_history or st.val_history[-1][0] != st.step:
            # resumed with less than a step of its budget left: the run ends here, validated and saved
            self._validate_and_keep_best()
            self.save()
        bar.close()
        return st

    def _accumulate(self, step: int) -> float:
        """Forward and backward over the step's micro-batches; the summed (scaled) loss."""
        cfg, loss_sum = self.cfg, 0.0
        for micro in range(cfg.grad_accum):
            batch = self._on_device(self.batches.get(step, micro))
            sync = contextlib.nullcontext()
            if self.dist.enabled and cfg.distributed == "ddp" and micro < cfg.grad_accum - 1:
                sync = self.eager_step_model.no_sync()   # all-reduce once, on the last micro-batch
            with sync:
                with self._autocast():
                    loss, _ = self.objective.loss(self.step_model, batch)
                    loss = loss / cfg.grad_accum
                loss.backward()
            loss_sum += float(loss.detach())
        return loss_sum

    def _validate_and_keep_best(self) -> bool:
        """Validate, save `best` on improvement; True when patience has run out."""
        st = self.state
        val, metrics = self.validate()
        st.val_history.append([st.step, round(st.train_seconds, 3), val])
        self.log({"kind": "val", "step": st.step, "val_loss": round(val, 6),
                  **{k: round(v, 6) for k, v in metrics.items()}, "train_seconds": round(st.train_seconds, 3)})
        if self.on_validate is not None:
            self.on_validate(st.step)
        if val < st.best_val_loss:
            st.best_val_loss, st.evals_since_best = val, 0
            if self.cfg.keep_best:
                self.save(name="best", with_state=False)
        else:
            st.evals_since_best += 1
        return bool(self.cfg.patience and st.evals_since_best >= self.cfg.patience)


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after `step` (they will be logged again by the resumed run)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic.write_text(path, "".join(f"{l}\n" for l in keep))
