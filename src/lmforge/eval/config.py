"""The `[eval]` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=list)   # task names or task files run by `lmforge eval`
    samples: int = 3                 # samples written after pretraining
    sample_tokens: int = 80
    sample_prompts: list[str] = field(default_factory=lambda: ["The ", "def ", "In Python, "])
    samples_during_training: bool = True   # generative models: complete the prompts at every validation
    temperature: float = 0.8
    top_k: int = 50
    max_val_tokens: int = 0          # 0 = score the whole validation split
    mlm_windows: int = 128           # masked-LM models: validation windows masked and scored
    pll_tokens: int = 512            # masked-LM models: tokens scored by pseudo-log-likelihood
    limit: int = 0                   # `lmforge eval`: examples per task, 0 = all
    num_fewshot: int = -1            # -1 = each task file's own num_fewshot
    seed: int = 0                    # few-shot draws, sampling and bootstrap resamples
    batch_size: int = 8              # sequences per forward pass when scoring
    code_modules: list[str] = field(default_factory=list)   # standard-library modules whose doctested functions
                                                            # the model completes (pass@1; keep them out of training)
    zero_shot_task: str = ""         # classify: a multiple-choice task on the same test set, scored on the base model
    compare: list[str] = field(default_factory=list)   # other runs / HF model dirs to evaluate alongside

    def validate(self) -> None:
        if self.samples < 0 or self.sample_tokens < 1:
            raise ValueError("samples must be >= 0 and sample_tokens >= 1")
        if self.temperature < 0:
            raise ValueError(f"temperature: got {self.temperature}, must be >= 0")
        if self.limit < 0 or self.num_fewshot < -1 or self.batch_size < 1:
            raise ValueError("limit must be >= 0, num_fewshot >= -1 and batch_size >= 1")
