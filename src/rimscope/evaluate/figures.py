"""Figures of the evaluation report as base64 PNGs, so report.html is one self-contained file
that can be mailed or archived with a paper without its images going missing."""
from __future__ import annotations

import base64
import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_base64(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def save_png(fig, path) -> None:
    """Write a figure to `path` atomically (the same 100 dpi as the report's) and close it."""
    from pathlib import Path

    from ..runtime import atomic_path

    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _colours(n):
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def roc_pr_figure(variants: dict, banded=("asymmetric", "asymmetric-frodo")) -> str:
    """ROC and PR curves (first repeat); patient-bootstrap 95 % bands for the `banded` rows (all
    rows' bands on one plot hide each other; every row's CIs are in the table)."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
    for (name, v), c in zip(variants.items(), _colours(len(variants))):
        cur = v.get("curves")
        if not cur:
            continue
        fpr, tpr = cur["roc"]
        auc = v["metrics"]["roc_auc"]
        a.step(fpr, tpr, where="post", color=c, lw=1.6, label=f"{name} ({auc:.3f})")
        rec, prec = cur["pr"]
        b.step(rec, prec, where="post", color=c, lw=1.6, label=f"{name} ({v['metrics']['pr_auc']:.3f})")
        bd = cur["bands"]
        if "tpr_lo" in bd and name in banded:
            a.fill_between(bd["grid"], bd["tpr_lo"], bd["tpr_hi"], color=c, alpha=0.12, lw=0)
            b.fill_between(bd["grid"], bd["prec_lo"], bd["prec_hi"], color=c, alpha=0.12, lw=0)
    a.plot([0, 1], [0, 1], ":", color="grey")
    a.axvspan(0, 0.1, color="grey", alpha=0.07)
    a.set(xlabel="1 − specificity (FPR)", ylabel="sensitivity", title="ROC (grey: FPR ≤ 0.1; bands: 95 % CI)")
    b.set(xlabel="recall", ylabel="precision", title="precision–recall", ylim=(0, 1.02))
    a.legend(fontsize=7, loc="lower right")
    b.legend(fontsize=7, loc="lower left")
    return to_base64(fig)


def calibration_figure(variants: dict) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.8))
    for (name, v), c in zip(variants.items(), _colours(len(variants))):
        cal = v.get("calibration")
        if cal and cal["mean_predicted"]:
            ax.plot(cal["mean_predicted"], cal["observed"], "o-", color=c, ms=3, lw=1,
                    label=f"{name} (Brier {v['metrics']['brier']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed Rim+ fraction", title="calibration",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    return to_base64(fig)


def label_efficiency_figure(points: list[dict]) -> str:
    plt = _plt()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ticks = set()
    for pre, c, lab, shift in ((False, "tab:grey", "from scratch", 0.97), (True, "tab:blue", "pre-trained", 1.03)):
        pts = [p for p in points if p["pretrained"] == pre]
        if not pts:
            continue
        ticks |= {max(p["n_used"]) for p in pts}
        x = [max(p["n_used"]) * shift for p in pts]  # arms side by side, error bars visible
        yv = [p["roc_auc"] for p in pts]
        lo = [p["roc_auc"] - p["roc_auc_ci95"][0] if np.isfinite(p["roc_auc_ci95"][0]) else 0 for p in pts]
        hi = [p["roc_auc_ci95"][1] - p["roc_auc"] if np.isfinite(p["roc_auc_ci95"][1]) else 0 for p in pts]
        ax.errorbar(x, yv, yerr=[lo, hi], fmt="o-", color=c, capsize=3, label=lab)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="labelled training subjects", ylabel="ROC AUC (out of fold)", title="label efficiency")
    ax.legend()
    return to_base64(fig)


def montage_figure(items: list[dict], title: str) -> str:
    """Centre axial slices (QSM, FLAIR) of lesions: items have x (4,S,S,S), caption."""
    plt = _plt()
    n = max(1, len(items))
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for j in range(n):
        for i in range(2):
            axes[i, j].axis("off")
        if j >= len(items):
            continue
        x = items[j]["x"]
        c = x.shape[-1] // 2
        axes[0, j].imshow(x[0, :, :, c].T, cmap="gray", vmin=-0.1, vmax=0.15, origin="lower")
        axes[0, j].contour(x[2, :, :, c].T, levels=[0.5], colors="r", linewidths=0.5, origin="lower")
        axes[1, j].imshow(x[1, :, :, c].T, cmap="gray", origin="lower")
        axes[0, j].set_title(items[j]["caption"], fontsize=6)
    axes[0, 0].text(-0.15, 0.5, "QSM", transform=axes[0, 0].transAxes, rotation=90, va="center")
    axes[1, 0].text(-0.15, 0.5, "FLAIR", transform=axes[1, 0].transAxes, rotation=90, va="center")
    fig.suptitle(title, fontsize=9)
    return to_base64(fig)
