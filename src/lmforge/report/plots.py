"""Pictures for report.html: matplotlib figures rendered to inline PNG data URIs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only
import matplotlib.pyplot as plt  # noqa: E402


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png_uri(buf.getvalue())


def training_curves(metrics: list[dict]) -> str | None:
    """Loss (train + validation), learning rate and throughput against step."""
    train = [m for m in metrics if m.get("kind") == "train"]
    val = [m for m in metrics if m.get("kind") == "val"]
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    steps = [m["step"] for m in train]
    axes[0].plot(steps, [m["loss"] for m in train], label="train", lw=1)
    if val:
        axes[0].plot([m["step"] for m in val], [m["val_loss"] for m in val], "o-", label="validation", ms=3)
    axes[0].set(title="loss", xlabel="step", ylabel="cross-entropy (nats/token)")
    axes[0].legend()
    axes[1].plot(steps, [m["lr"] for m in train], color="tab:green")
    axes[1].set(title="learning rate", xlabel="step")
    axes[2].plot(steps, [m["tokens_per_s"] for m in train], color="tab:orange")
    axes[2].set(title="throughput", xlabel="step", ylabel="tokens/s")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _to_data_uri(fig)


def zero_shot_curves(metrics: list[dict]) -> str | None:
    """A clip run's zero-shot accuracy and image->text recall@1 at each validation, chance dashed."""
    evals = [m for m in metrics if m.get("kind") == "clip_eval"]
    if not evals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    steps = [m["step"] for m in evals]
    for ax, metric, chance, title in ((axes[0], "zero_shot_accuracy", "zero_shot_chance", "zero-shot accuracy"),
                                      (axes[1], "image_to_text_recall@1", "image_to_text_chance@1",
                                       "image->text recall@1")):
        for split, colour in (("val", "tab:blue"), ("held_out", "tab:red")):
            if f"{split}_{metric}" in evals[0]:
                ax.plot(steps, [m[f"{split}_{metric}"] for m in evals], "o-", ms=3, color=colour,
                        label="held-out compositions" if split == "held_out" else "validation")
                ax.axhline(evals[0][f"{split}_{chance}"], ls="--", lw=1, color=colour)
        ax.set(title=f"{title} (dashed: chance)", xlabel="step", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend()
    return _to_data_uri(fig)


def length_histogram(edges: list[int], counts: list[int]) -> str | None:
    if not counts:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [f"{edges[i]:,}" for i in range(len(counts))]
    ax.bar(range(len(counts)), counts, color="tab:blue")
    ax.set_xticks(range(len(counts)), labels, rotation=60, fontsize=7)
    ax.set(title="document length (bytes, bin start)", ylabel="documents")
    return _to_data_uri(fig)


def governance(result: dict) -> str | None:
    """Minimal-pairs preference by bias type (against 50%) and canary exposure by repetition count."""
    pairs = result.get("bias", {}).get("minimal_pairs", {})
    canaries = result.get("privacy", {}).get("canaries")
    panels = [p for p in (pairs.get("by_type") or ({"all": pairs} if pairs else None), canaries) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.4), squeeze=False)
    axes = list(axes[0])
    if pairs:
        ax = axes.pop(0)
        groups = pairs.get("by_type") or {"all": pairs}
        names = sorted(groups)
        pct = [100 * groups[g]["pct_stereotype"] for g in names]
        err = [[100 * (groups[g]["pct_stereotype"] - groups[g]["ci95"][0]) for g in names],
               [100 * (groups[g]["ci95"][1] - groups[g]["pct_stereotype"]) for g in names]]
        ax.bar(range(len(names)), pct, yerr=err, color="tab:purple", capsize=3)
        ax.axhline(50, color="k", lw=1, ls="--")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set(title="prefers the stereotyping sentence (%, 95% CI)", ylim=(0, 100))
    if canaries:
        ax = axes.pop(0)
        rows = canaries["canaries"]
        ax.scatter([max(r["repetitions"], 0.5) for r in rows], [r["exposure"] for r in rows], color="tab:red")
        ax.axhline(canaries["space_bits"], color="k", lw=1, ls="--", label="fully memorised")
        ax.set_xscale("log", base=2)
        ax.set(title="canary exposure (0.5 = never inserted)", xlabel="times in the training split",
               ylabel="exposure (bits)")
        ax.legend()
    return _to_data_uri(fig)
