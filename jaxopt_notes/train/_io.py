"""Training's files: orbax checkpoints (one per epoch, written atomically), JSONL, curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax


def checkpoint_manager(out_dir: Path):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager((out_dir / "checkpoints").absolute(), options=options)


def save_checkpoint(manager, epoch: int, state: Any, run: dict) -> None:
    import orbax.checkpoint as ocp

    args = ocp.args.Composite(
        state=ocp.args.StandardSave({"leaves": jax.tree.leaves(state)}),
        run=ocp.args.JsonSave(run),
    )
    manager.save(epoch, args=args)
    manager.wait_until_finished()


def restore_checkpoint(manager, state: Any, config: dict) -> tuple[Any, dict] | None:
    """The latest checkpoint, after checking that it was made with ``config``."""
    import orbax.checkpoint as ocp

    epoch = manager.latest_step()
    if epoch is None:
        return None
    run = dict(manager.restore(epoch, args=ocp.args.Composite(run=ocp.args.JsonRestore()))["run"])
    if run["config"] != config:
        changed = sorted(k for k, v in config.items() if run["config"].get(k) != v)
        raise ValueError(
            f"`resume` needs the configuration of the checkpointed run; these differ: {changed}"
        )
    leaves, treedef = jax.tree.flatten(state)
    target = {"leaves": [ocp.utils.to_shape_dtype_struct(leaf) for leaf in leaves]}
    restored = manager.restore(
        epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )
    return jax.tree.unflatten(treedef, restored["state"]["leaves"]), run


def write_jsonl(path: Path, records: list[dict], mode: str = "w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode) as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def plot_curves(history: list[dict], out_dir: str | Path) -> None:
    """Writes ``loss.png`` and ``accuracy.png`` (train and held-out, per epoch) to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for split in ("train", "test"):
            ax.plot([r["epoch"] for r in history], [r[f"{split}_{metric}"] for r in history],
                    marker="o", label=split)  # fmt: skip
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.legend()
        fig.tight_layout()
        fig.savefig(Path(out_dir) / f"{metric}.png", dpi=100)
        plt.close(fig)
