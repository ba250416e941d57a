"""Training's small files: JSONL streams and the curve PNGs."""

from __future__ import annotations

import json
from pathlib import Path

from jaxopt_notes._extras import require


def write_jsonl(path: Path, records: list[dict], mode: str = "w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as f:
        f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in records)


def plot_curves(history: list[dict], out_dir: str | Path) -> None:
    """Writes ``loss.png`` and ``accuracy.png`` (train and validation, per epoch) to ``out_dir``."""
    matplotlib = require("matplotlib", "train")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for split, label in (("train", "train (augmented batches)"), ("val", "validation")):
            values = [
                float("nan") if r[f"{split}_{metric}"] is None else r[f"{split}_{metric}"]
                for r in history
            ]
            ax.plot([r["epoch"] for r in history], values, marker="o", label=label)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(out_dir) / f"{metric}.png", dpi=100)
        plt.close(fig)
