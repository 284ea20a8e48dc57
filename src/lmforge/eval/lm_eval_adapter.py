"""lmforge runs as an lm-evaluation-harness model, registered under the name "lmforge".

    python -m lmforge.eval.lm_eval_adapter run --model lmforge \\
        --model_args pretrained=runs/mine,batch_size=8 --tasks hellaswag,arc_easy

or from Python, after `import lmforge.eval.lm_eval_adapter`:

    lm_eval.simple_evaluate(model="lmforge", model_args="pretrained=runs/mine", tasks=[...])

The three request types go straight to lmforge's own implementations in
`lmforge.eval.lm`, so lm-eval's numbers and `lmforge eval`'s agree by construction.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  (lm-eval loads its own models only into an empty registry)
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from lmforge.eval.backends import load_lm


@register_model("lmforge")
class LmforgeEvalHarnessLM(LM):
    def __init__(self, pretrained: str, batch_size: int | str = 8, device: str | None = None,
                 seed: int = 0, **_unused) -> None:
        # _unused: options lm-eval passes to every model (max_batch_size, ...) that do not apply here
        super().__init__()
        # "auto" batch sizing is an HF-model feature; lmforge models are small, a fixed size is fine
        size = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.lm = load_lm(pretrained, device=torch.device(device) if device else None, batch_size=size)
        self.seed = int(seed)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        return self.lm.loglikelihood([tuple(r.args) for r in requests])

    def loglikelihood_rolling(self, requests) -> list[float]:
        return self.lm.loglikelihood_rolling([r.args[0] for r in requests])

    def generate_until(self, requests) -> list[str]:
        return self.lm.generate_until([(r.args[0], dict(r.args[1])) for r in requests], seed=self.seed)


if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate
    cli_evaluate()
