"""Weight histogram with the ESS in the title (matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import atomic_path


def weight_histogram(raw: np.ndarray, final: np.ndarray, diag: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, w, name, ess in [(axes[0], raw / max(np.mean(raw), 1e-300), "raw (mean-normalised)", diag["ess_fraction_raw"]),
                             (axes[1], final, "stabilised", diag["ess_fraction"])]:
        ax.hist(w, bins=50, color="#4477aa")
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("weight")
        ax.set_ylabel("source examples")
        ax.set_title(f"{name}: ESS/N = {ess:.3f}")
    auc = ""
    if "domain_auc_before" in diag:
        auc = f"   domain AUC {diag['domain_auc_before']:.3f} -> {diag['domain_auc_after']:.3f}"
    fig.suptitle(title + auc)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
