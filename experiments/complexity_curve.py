"""The complexity U-curve: training loss falls with capacity, held-out loss falls then rises.

Li Hongyi's "机器学习任务攻略" (seed 002) draws the loss of a model with no optimisation problem
against its complexity: the training loss falls all the way, the testing loss falls and then
rises. Least-squares polynomial regression is such a model (the fit is the exact minimiser), so
it is the cleanest place to measure the curve: Bishop's setup (PRML sec. 1.1, Fig. 1.5),
``n_train`` points x ~ U[0, 1] with targets sin(2 pi x) + N(0, noise^2), polynomials of degree
0..``max_degree`` (a Legendre basis, for conditioning). Every seed draws fresh training,
validation and test sets. As the notes prescribe, the validation set selects the degree and the
test set (1,000 fresh points) judges it. A second claim of the notes: choosing the model on the
very set that reports its loss is optimistic, judged against a fresh set of the same size.

The regime map repeats the rise over training-set sizes and noise levels: with little noise and
plenty of data there is nothing to overfit and the curve does not rise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param
from numpy.polynomial import legendre

SUMMARY = "Polynomial degree: training loss falls, validation/test loss falls then rises (U-curve)"
DATA = (
    "synthetic: x ~ U[0, 1], y = sin(2 pi x) + Gaussian noise (Bishop, PRML sec. 1.1); fresh "
    "training, validation and 1,000-point test sets per seed"
)
QUICK_NOTE = "quick runs 20 seeds instead of 50 and a smaller regime map; the fits are exact."

NOTE, SECTION = "002_3498af5075c2b1b1.txt", "机器学习任务攻略"
BISHOP = "Bishop, Pattern Recognition and Machine Learning, sec. 1.1 and Fig. 1.5"


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 50
    n_train: int = 10  # Bishop's N = 10
    n_val: int = 10
    n_test: int = 1000
    noise: float = param(0.3, low=0.0, help="std of the target noise (Bishop: 0.3)")
    max_degree: int = 9  # Bishop's M = 0..9
    rise_factor: float = param(2.0, low=1.0)
    fall_factor: float = param(1.5, low=1.0)
    optimism_factor: float = param(1.1, low=1.0)
    interior_share: float = param(0.5, low=0.0, high=1.0, high_open=True)
    map_n_train: tuple = (10, 20, 50, 200)
    map_noise: tuple = param((0.0, 0.1, 0.3, 1.0), low=0.0)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=20, map_n_train=(10, 50, 200), map_noise=(0.0, 0.3, 1.0))

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=12, map_n_train=(10, 200), map_noise=(0.0, 0.3))

    def validate(self) -> None:
        if self.n_train <= self.max_degree:
            raise ValueError(
                f"`n_train` must be > max_degree = {self.max_degree}, got {self.n_train}"
            )
        if min(self.map_n_train) <= self.max_degree:
            raise ValueError(f"`map_n_train` must be > max_degree, got {self.map_n_train}")


def target(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x)


def draw_set(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0.0, 1.0, n)
    return x, target(x) + noise * rng.standard_normal(n)


def design(x: np.ndarray, degree: int) -> np.ndarray:
    return legendre.legvander(2 * x - 1, degree)  # [0, 1] -> [-1, 1], where Legendre is tame


def curves(seed: int, n_train: int, n_val: int, n_test: int, noise: float, max_degree: int):
    """MSE on train / validation / a second validation set / test for degrees 0..max_degree."""
    rng = np.random.default_rng(seed)
    sets = [draw_set(rng, n, noise) for n in (n_train, n_val, n_val, n_test)]
    xt, yt = sets[0]
    out = np.empty((4, max_degree + 1))
    for d in range(max_degree + 1):
        w = np.linalg.lstsq(design(xt, d), yt, rcond=None)[0]
        for row, (x, y) in enumerate(sets):
            out[row, d] = np.mean((design(x, d) @ w - y) ** 2)
    return out


def measure(cfg: Config, n_train: int, noise: float) -> dict:
    """Per seed: the curves, the validation-selected degree, and the losses the claims compare."""
    runs = np.stack(
        [curves(s, n_train, cfg.n_val, cfg.n_test, noise, cfg.max_degree) for s in range(cfg.seeds)]
    )
    train, val, val2, test = runs.transpose(1, 0, 2)
    chosen = val.argmin(axis=1)
    pick = np.arange(cfg.seeds)
    return {
        "train_mse": train.tolist(),
        "val_mse": val.tolist(),
        "test_mse": test.tolist(),
        "chosen_degree": chosen.tolist(),
        "test_at_chosen": test[pick, chosen].tolist(),
        "test_at_max": test[:, -1].tolist(),
        "test_at_zero": test[:, 0].tolist(),
        "val_at_chosen": val[pick, chosen].tolist(),
        "fresh_at_chosen": val2[pick, chosen].tolist(),
    }


def regime(cfg: Config) -> dict:
    """The rise (test MSE at max degree / at the selected degree) over n_train x noise."""
    cells = {}
    for n in cfg.map_n_train:
        for s in cfg.map_noise:
            m = measure(cfg, n, s)
            est = _stats.paired_ratio(m["test_at_max"], m["test_at_chosen"])
            verdict = "holds" if est.low > cfg.rise_factor else "fails"
            verdict = "unclear" if est.low <= cfg.rise_factor < est.high else verdict
            cells[f"n={n}, noise={s}"] = {
                "n_train": n,
                "noise": s,
                "rise": est.as_dict(),
                "verdict": verdict,
            }
    return cells


def src(quote: str, english: str) -> Source:
    return Source(NOTE, SECTION, quote, english, BISHOP)


U_CURVE = src(
    "一个不存在optimization问题的模型的loss与模型复杂度的关系应该是这样的:",
    "for a model with no optimization problem, the loss should depend on the model's "
    "complexity like this: [figure: training loss keeps falling, testing loss falls, then rises]",
)
SELECT = src(
    "但是通常我们不通过测试集来选择模型,因为如果这样做我们的模型可能在对下一组没有见过的测试集上表现很差",
    "but usually we do not choose the model with the test set, because then our model may do "
    "badly on the next test set it has not seen",
)


def claims(metrics: dict, cfg: Config) -> list[dict]:
    m, n = metrics, cfg.seeds
    chosen = np.asarray(m["chosen_degree"])
    interior = int(np.sum((chosen > 0) & (chosen < cfg.max_degree)))
    share = Test(
        f"share of seeds whose validation minimum is interior (0 < degree < {cfg.max_degree})",
        ">",
        cfg.interior_share,
        "a majority: the notes' curve has its minimum inside the range",
        n,
    )
    train = np.asarray(m["train_mse"])
    steps = np.diff(train, axis=1) / train[:, :-1]
    setup = f"{cfg.n_train} points, noise {cfg.noise}, degrees 0..{cfg.max_degree}"
    return [
        claim(
            f"Past the best capacity the held-out loss rises: the test MSE at degree "
            f"{cfg.max_degree} is at least {cfg.rise_factor}x the test MSE at the degree the "
            f"validation set picks ({setup})",
            [
                _stats.paired_ratio(m["test_at_max"], m["test_at_chosen"]),
                _stats.proportion(interior, n),
            ],
            [
                Test(
                    f"test MSE ratio (degree {cfg.max_degree} / validation-chosen degree)",
                    ">",
                    cfg.rise_factor,
                    "twice: a pre-stated effect; Bishop's Fig. 1.5 shows the test error at "
                    "M = 9 far above its minimum",
                    n,
                    paired=True,
                ),
                share,
            ],
            U_CURVE,
            {"mean_chosen_degree": _stats.mean(chosen)},
            id="held_out_loss_rises",
            kind="check",
        ),
        claim(
            f"Before the best capacity the held-out loss falls: the test MSE at degree 0 is at "
            f"least {cfg.fall_factor}x the test MSE at the validation-chosen degree ({setup})",
            _stats.paired_ratio(m["test_at_zero"], m["test_at_chosen"]),
            Test(
                "test MSE ratio (degree 0 / validation-chosen degree)",
                ">",
                cfg.fall_factor,
                "a pre-stated effect of 1.5x: the notes' curve falls visibly before it rises",
                n,
                paired=True,
            ),
            U_CURVE,
            id="held_out_loss_falls",
        ),
        claim(
            "Choosing the degree on the set that reports the loss is optimistic: on a fresh set "
            f"of the same size ({cfg.n_val} points) the chosen model's MSE is higher",
            _stats.paired_ratio(m["fresh_at_chosen"], m["val_at_chosen"]),
            Test(
                "MSE ratio at the chosen degree (fresh set / selecting set)",
                ">",
                cfg.optimism_factor,
                "a pre-stated effect: 10% optimism",
                n,
                paired=True,
            ),
            SELECT,
            id="selection_is_optimistic",
        ),
        check(
            "The training MSE never rises with the degree (nested least-squares fits)",
            bool(np.all(steps <= 1e-9)),
            {"largest_relative_rise": float(steps.max()), "seeds": n},
            reason="least squares over nested function spaces cannot fit the training set worse",
            id="training_loss_falls",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    degrees = np.arange(cfg.max_degree + 1)
    ax = axes[0]
    for key, label in (("train_mse", "train"), ("val_mse", "validation"), ("test_mse", "test")):
        values = np.asarray(metrics[key])
        med = np.median(values, axis=0)
        ax.plot(degrees, med, "o-", label=f"{label} (median of {cfg.seeds} seeds)")
        lo, hi = np.quantile(values, [0.25, 0.75], axis=0)
        ax.fill_between(degrees, lo, hi, alpha=0.15)
    test_median = np.median(metrics["test_mse"], axis=0)
    best = int(np.argmin(test_median))
    # an interpolating fit has a training MSE of ~1e-25: keep the axis on the held-out losses
    ax.set_ylim(bottom=max(test_median.min() / 100, 1e-12))
    ax.axvline(best, color="grey", ls="--", label=f"minimum of the median test MSE: {best}")
    ax.set(
        yscale="log",
        xlabel="polynomial degree",
        ylabel="MSE",
        title=f"least squares, n={cfg.n_train}, noise {cfg.noise}",
    )
    ax.legend(fontsize=8)
    counts = np.bincount(metrics["chosen_degree"], minlength=cfg.max_degree + 1)
    axes[1].bar(degrees, counts, color="tab:green")
    axes[1].set(
        xlabel="degree chosen by the validation set",
        ylabel="seeds",
        title="where the validation minimum lies",
    )
    draw_map(axes[2], metrics["regime"], cfg)
    fig.tight_layout()
    return save_figure(fig, out_dir, "complexity_curve")


def draw_map(ax, cells: dict, cfg: Config) -> None:
    ns, noises = list(cfg.map_n_train), list(cfg.map_noise)
    grid = np.zeros((len(noises), len(ns)))
    for c in cells.values():
        grid[noises.index(c["noise"]), ns.index(c["n_train"])] = np.log10(c["rise"]["value"])
    im = ax.imshow(grid, origin="lower", cmap="coolwarm", aspect="auto")
    for c in cells.values():
        i, j = noises.index(c["noise"]), ns.index(c["n_train"])
        ax.text(
            j, i, f"{c['rise']['value']:.3g}\n{c['verdict']}", ha="center", va="center", fontsize=8
        )
    ax.set_xticks(range(len(ns)), [str(n) for n in ns])
    ax.set_yticks(range(len(noises)), [str(s) for s in noises])
    ax.set(
        xlabel="training points",
        ylabel="noise std",
        title=f"rise: test MSE deg {cfg.max_degree} / chosen (holds: > {cfg.rise_factor})",
    )
    plt.colorbar(im, ax=ax, label="log10 rise")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg, cfg.n_train, cfg.noise)
    metrics["regime"] = regime(cfg)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
