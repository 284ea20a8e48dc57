"""`train.compile = "auto"`: compile the training step only where it pays, by measurement.

torch.compile makes a CPU training step up to ~1.8x faster on bf16 hardware, but costs tens of
seconds of compiling first, which a short run never earns back. So the loop times its first
steps eagerly, then, if the rest of the run is long enough to risk it, compiles and times the
first compiled steps (the first includes the compile). From then on it keeps whichever step is
faster: the compile time is spent by then, so only the step times matter. Every measurement is
training time, counted in the run's budget.

The result is cached per machine, shape, settings and version of lmforge's code (compile.json in lmforge's cache), and
Inductor's compiled kernels in its inductor/ folder: a later run of the same shape decides
from the cache without a trial, compiling (cheaply, from the kernel cache) only when
(eager - compiled) x steps left > the cached compile time.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from lmforge.cache import cache_root, read_table, write_entry

EAGER_STEPS = 3          # timed eager steps (after the first, which warms caches)
COMPILED_STEPS = 3       # timed compiled steps after the one that compiles
# Without a cached result, a run tries compiling only with this much training time left. The
# prior (docs/experiments.md): 1.7-1.8x faster steps in bf16 on AMX at 6 x 384, but 0.93x for the
# quickstart's 4 x 128 in bf16 on an AVX-512 EPYC after 59 s of compiling (a fifth of its 300 s),
# ~1.03x in fp32 on AVX2: a trial must be cheap next to the run even when it loses.
MIN_TRIAL_SECONDS = {torch.bfloat16: 600.0, None: 1200.0}


TABLE = "compile.json"


def use_kernel_cache() -> None:
    """Inductor's compiled kernels under lmforge's cache, unless the user chose a place."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))


@dataclass
class Decision:
    compile: bool
    reason: str
    eager_step_s: float | None = None
    compiled_step_s: float | None = None
    compile_s: float | None = None
    source: str = "measured"          # measured | cache | recipe


def pays(eager_s: float, compiled_s: float, compile_s: float, steps_left: float) -> bool:
    """Whether compiling now saves more time over the steps left than compiling costs."""
    return (eager_s - compiled_s) * steps_left > compile_s


class AutoCompile:
    """Fed each step's duration; says when to compile, when to go back to eager, and why."""

    def __init__(self, key: str, autocast_dtype: torch.dtype | None = None):
        self.key = key
        self.min_trial_seconds = MIN_TRIAL_SECONDS.get(autocast_dtype, MIN_TRIAL_SECONDS[None])
        self.eager: list[float] = []
        self.compiled: list[float] = []
        self.first_compiled: float | None = None
        self.decision: Decision | None = None
        self.trying = False

    def start(self, steps_left_at: Callable[[float], float]) -> str | None:
        """Before the first step: "compile" when the cache says it pays, else None (measure first).
        steps_left_at(step seconds): how many steps of that length the run has left."""
        cached = read_table(TABLE).get(self.key)
        if cached is None:
            return None
        steps_left = steps_left_at(cached["eager_step_s"])
        go = pays(cached["eager_step_s"], cached["compiled_step_s"], cached["compile_s"], steps_left)
        self.decision = Decision(go, ("compiling pays" if go else "compiling does not pay") +
                                 f" over {steps_left:.0f} steps (cached measurement)",
                                 cached["eager_step_s"], cached["compiled_step_s"], cached["compile_s"], "cache")
        return "compile" if go else None

    def after_step(self, seconds: float, steps_left: float) -> str | None:
        """Record one step's time; return "compile", "eager" or None (carry on as now)."""
        if self.decision is not None:
            return None
        if not self.trying:
            self.eager.append(seconds)
            if len(self.eager) < EAGER_STEPS + 1:
                return None
            eager = statistics.median(self.eager[1:])
            if steps_left * eager < self.min_trial_seconds:
                self.decision = Decision(False, f"{steps_left * eager:.0f} s left: too short to try compiling",
                                         eager_step_s=eager)
                return None
            self.trying = True
            return "compile"
        if self.first_compiled is None:
            self.first_compiled = seconds
            return None
        self.compiled.append(seconds)
        if len(self.compiled) < COMPILED_STEPS:
            return None
        eager, compiled = statistics.median(self.eager[1:]), statistics.median(self.compiled)
        compile_s = max(self.first_compiled - compiled, 0.0)
        keep = compiled < eager
        self.decision = Decision(keep, f"compiled step {compiled:.3f} s against eager {eager:.3f} s",
                                 eager, compiled, compile_s)
        write_entry(TABLE, self.key, {"eager_step_s": eager, "compiled_step_s": compiled, "compile_s": compile_s})
        return None if keep else "eager"

    def fail(self, why: str) -> None:
        """Compiling failed: stay eager (not cached: the next run may have what was missing)."""
        eager = statistics.median(self.eager[1:]) if len(self.eager) > 1 else None
        self.decision = Decision(False, f"compiling failed ({why}); eager", eager_step_s=eager)

    def record(self) -> dict | None:
        return None if self.decision is None else asdict(self.decision)
