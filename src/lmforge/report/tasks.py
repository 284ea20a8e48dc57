"""Task results of a run (eval/<task>.json) as table rows, for the report and the model card."""

from __future__ import annotations

import json

from lmforge.rundir import RunDir

TASK_HEADER = ["task", "metric", "value (± stderr or [95% interval])", "n"]


def task_rows(run: RunDir) -> list[list]:
    from lmforge.eval.harness import format_metric
    if not run.eval.exists():
        return []
    rows = []
    for path in sorted(p for p in run.eval.glob("*.json") if p != run.own_result):
        res = json.loads(path.read_text())
        for name, entry in res.get("metrics", {}).items():
            rows.append([res.get("task", path.stem), name, format_metric(entry), res.get("n", "")])
    return rows
