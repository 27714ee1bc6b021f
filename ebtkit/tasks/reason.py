"""The reasoning task: problems whose harder instances need more optimisation (:mod:`ebtkit.data.reasoning`),
an EBT that answers by thinking, and the two baselines built from the same trunk (:mod:`ebtkit.core.models.reason`).

Training recipe of the EBT (System 2, after IREM; REASONING_ANCHORS.md):

* the candidate is the answer itself (a matrix, or per-cell logits stepped on the simplex), started at random;
* thinking runs through :func:`~ebtkit.core.thinking.think` with a random step count ``U{steps..max_steps}`` per
  batch, no detach between steps, and the loss (MSE, or cross-entropy per cell) on the last candidate;
  ``unroll`` picks which steps build a second-order graph: ``"last"`` (truncated, ebtkit's System 2 and IREM's
  default) or ``"all"`` (full back-propagation through the unrolled steps);
* a **replay buffer** continues ``replay_fraction`` of each batch from earlier final candidates (one buffer per
  instance shape, so graphs of different sizes never mix);
* options: Langevin noise and a random α per instance (``thinking.langevin_sigma``, ``thinking.alpha_jitter``),
  and IRED's **contrastive near-miss term** (``thinking.contrastive_coeff``): ``−log softmax(−E)`` of the true answer
  against ``contrastive_negatives`` near misses (the answer plus Gaussian noise of ``contrastive_noise``, or with
  that fraction of its cells set to another value).

The looped baseline trains with the same step counts, starts and replay; the feed-forward baseline with one pass.
Which of these matter was measured (docs/reasoning.md); the presets hold what measured best.

Evaluation during training: the headline ``val_error`` at the **validation difficulty** (MSE, or 1 − per-cell
accuracy), never a test difficulty; ``ebt eval`` draws the thinking curves (:mod:`ebtkit.eval.reason`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import Config, ConfigError, ThinkingConfig, TrainConfig, resolve_preset
from ..core.device import model_device
from ..core.models.reason import ReasonModelConfig, Shape, build_reason_model
from ..core.recipe import ThinkingSpec, sample_steps
from ..core.replay import ReplayBuffer, extend_with_replay
from ..core.rng import host_generator
from ..core.thinking import is_energy_model
from ..data.reasoning import PROBLEMS, Problem, get_problem
from .base import Task

UNROLLS = ("last", "all")
VAL_SEED, TEST_SEED = 7_000_003, 9_000_011       # fixed: every run and model is scored on the same instances


@dataclass
class ReasonDataConfig(Config):
    """The problem and its difficulties (None: the problem's own; :mod:`ebtkit.data.reasoning`)."""

    problem: str = "addition"
    size: int = 10                          # matrix side (addition, inverse)
    train_difficulty: list[float] | None = None    # [lo, hi]
    val_difficulty: float | None = None
    eval_difficulties: list[float] | None = None
    val_instances: int = 512
    sudoku_pool: int = 64                   # unique sudoku puzzles made per (givens, pool); augmented by symmetries

    def __post_init__(self):
        if self.problem not in PROBLEMS:
            raise ValueError(f"unknown problem {self.problem!r}; choose from {', '.join(PROBLEMS)}")
        if not 2 <= self.size <= 64:
            raise ValueError(f"size must be in [2, 64], got {self.size}")
        if self.val_instances < 1 or self.sudoku_pool < 1:
            raise ValueError("val_instances and sudoku_pool must be >= 1")
        p = self.make()
        if self.train_difficulty is not None:
            if len(self.train_difficulty) != 2 or self.train_difficulty[0] > self.train_difficulty[1]:
                raise ValueError(f"train_difficulty is [lo, hi] with lo <= hi, got {self.train_difficulty}")
            for d in self.train_difficulty:
                p.check(d)
        for d in [self.val_difficulty, *(self.eval_difficulties or [])]:
            if d is not None:
                p.check(d)

    def make(self) -> Problem:
        p = get_problem(self.problem, self.size)
        if self.problem == "sudoku":
            p.pool_size = self.sudoku_pool
        return p

    @property
    def train_range(self) -> tuple[float, float]:
        return tuple(self.train_difficulty) if self.train_difficulty is not None else PROBLEMS[self.problem].train

    @property
    def id_difficulty(self) -> float:
        """The in-distribution difficulty reported beside the others: the largest training size for sized problems,
        else the middle of the training range."""
        lo, hi = self.train_range
        if PROBLEMS[self.problem].sized:
            return hi
        mid = (lo + hi) / 2
        return float(round(mid)) if PROBLEMS[self.problem].kind == "categorical" else mid

    @property
    def val(self) -> float:
        return self.val_difficulty if self.val_difficulty is not None else PROBLEMS[self.problem].val

    @property
    def tests(self) -> list[float]:
        return list(self.eval_difficulties) if self.eval_difficulties is not None else list(PROBLEMS[self.problem].test)


@dataclass
class ReasonRunConfig(Config):
    model: ReasonModelConfig = field(default_factory=ReasonModelConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: ReasonDataConfig = field(default_factory=ReasonDataConfig)
    unroll: str = "last"                    # EBT: second-order graph at the last step | at every step
    contrastive_negatives: int = 4          # near misses per instance (thinking.contrastive_coeff > 0)
    contrastive_noise: float = 0.1          # their distance: Gaussian σ (continuous) | fraction of cells changed
    preset: str = "custom"

    def __post_init__(self):
        if self.unroll not in UNROLLS:
            raise ValueError(f"unknown unroll {self.unroll!r}; choose from {', '.join(UNROLLS)}")
        if self.contrastive_negatives < 1 or not self.contrastive_noise > 0:
            raise ValueError("contrastive_negatives must be >= 1 and contrastive_noise > 0")
        m, p = self.model, self.data.problem
        allowed = ARCHS_OF[p]
        if m.arch not in allowed:
            raise ValueError(f"arch {m.arch!r} does not fit problem {p!r}; choose from {', '.join(allowed)}")

    @property
    def shape(self) -> Shape:
        prob = PROBLEMS[self.data.problem]
        return Shape(self.data.problem, 9 if self.data.problem == "sudoku" else self.data.size, prob.kind, prob.classes)

    def size_estimate(self, precision: str = "fp32", ranks: int = 1):
        """Parameters (exact, from a model built on the meta device) and training memory (activations of the
        unrolled steps, an upper bound from element counts; :mod:`ebtkit.core.estimate`)."""
        from ..core.estimate import Estimate   # noqa: PLC0415 (estimate imports no task)
        with torch.device("meta"):
            model = build_reason_model(self.shape, self.model)
        params = sum(p.numel() for p in model.parameters())
        lo, hi = self.data.train_range
        n = {"addition": self.data.size, "inverse": self.data.size, "connectivity": int(hi) ** 2,
             "parity": int(hi), "sudoku": 81}[self.data.problem]
        D, L, t = self.model.d_model, self.model.n_layers, self.thinking
        steps = (t.max_steps or t.steps) if self.model.model != "feedforward" else 1
        width = 8 * D + (int(hi) * D if self.model.arch == "pairs" else 0)   # per element per layer (triangle: n·D)
        per = steps * (3 if self.model.model == "ebt" else 1) * L * n * width * (2 if precision != "fp32" else 4)
        rows = self.train.batch_size + (int(round(t.replay_fraction * self.train.batch_size))
                                        if t.replay_fraction > 0 and self.model.model != "feedforward" else 0)
        return Estimate(kind=f"reason-{self.model.model}", params=params, non_embedding_params=model.trunk_params(),
                        precision=precision, rows=rows, activation_bytes_per_sequence=int(per))


ARCHS_OF = {"addition": ("mlp", "transformer"), "inverse": ("mlp", "transformer"), "connectivity": ("pairs",),
            "parity": ("conv", "transformer"), "sudoku": ("transformer",)}

# --------------------------------------------------------------------------------------------- presets
# Generic size presets (shown by `ebt presets`); each problem's own table below refines them. `gpu` is sized for
# one GPU and was not run here (no device was lent): its step counts are the anchors' orders of magnitude.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"train.steps": 20, "train.batch_size": 16, "train.warmup": 2, "train.eval_every": 10,
             "train.save_every": 10, "train.log_every": 5, "data.val_instances": 32, "data.sudoku_pool": 4},
    "cpu": {"train.steps": 1500, "train.batch_size": 256, "train.warmup": 50, "train.eval_every": 500,
            "train.save_every": 500, "train.log_every": 50},
    "gpu": {"train.steps": 50_000, "train.batch_size": 512, "train.warmup": 1000, "train.eval_every": 2500,
            "train.save_every": 2500, "train.log_every": 100, "data.val_instances": 2048},
}

# per problem: architecture and width (tiny shrinks them), thinking steps, learning rate
PROBLEM_PRESETS: dict[str, dict[str, Any]] = {
    # 2 steps, not U{3..5}: chosen at the validation range 1.5 on 3 seeds (docs/reasoning.md §3): the same final
    # MSE (3.0e-4 vs 2.6e-4), thinking pays beyond the trained count (4T/T = 0.38 vs 1.12), 3× cheaper training
    "addition": {"model.arch": "mlp", "model.d_model": 256, "model.n_layers": 3, "model.init": "uniform",
                 "thinking.steps": 2, "thinking.max_steps": None, "train.lr": 1e-3},
    # 2 steps, not U{3..5}: validation d = 2, MSE 0.113 vs 0.119 at the best step count, lower on each of 3 seeds,
    # and a gain beyond the trained count (docs/reasoning.md §2.2)
    "inverse": {"model.arch": "mlp", "model.d_model": 256, "model.n_layers": 3, "model.init": "uniform",
                "thinking.steps": 2, "thinking.max_steps": None, "train.lr": 1e-3},
    "connectivity": {"model.arch": "pairs", "model.d_model": 32, "model.n_layers": 2, "model.init": "normal",
                     "thinking.steps": 3, "thinking.max_steps": 5, "train.lr": 2e-3, "train.batch_size": 64,
                     "train.steps": 600, "train.eval_every": 200, "train.save_every": 200},
    "parity": {"model.arch": "conv", "model.d_model": 64, "model.n_layers": 3, "model.init": "normal",
               "thinking.steps": 4, "thinking.max_steps": 8, "train.lr": 2e-3, "train.batch_size": 64,
               "train.steps": 600, "train.eval_every": 200, "train.save_every": 200},
    "sudoku": {"model.arch": "transformer", "model.d_model": 64, "model.n_layers": 3, "model.n_heads": 4,
               "model.init": "normal", "thinking.steps": 4, "thinking.max_steps": 8, "train.lr": 1e-3,
               "train.batch_size": 32, "train.steps": 400, "train.eval_every": 200, "train.save_every": 200,
               "data.val_instances": 128, "data.sudoku_pool": 32},
}
_TINY_SIZE = {"model.d_model": 16, "model.n_layers": 2, "model.n_heads": 2, "thinking.steps": 2,
              "thinking.max_steps": 3, "train.batch_size": 16}
_GPU_SIZE = {"sudoku": {"model.d_model": 256, "model.n_layers": 6, "model.n_heads": 8, "data.sudoku_pool": 2048,
                        "thinking.steps": 8, "thinking.max_steps": 16, "train.lr": 3e-4, "train.batch_size": 256,
                        "data.val_instances": 1024}}

_OFF = {"thinking.eval_steps": None, "thinking.langevin_sigma": 0.0, "thinking.alpha_jitter": 1.0,
        "thinking.replay_fraction": 0.0, "thinking.replay_size": 0, "thinking.contrastive_coeff": 0.0}
RECIPES: dict[str, dict[str, Any]] = {
    # the reasoning recipe (default): System 2, random steps per batch, half of each batch replayed
    "s2": {**_OFF, "thinking.system": "s2", "thinking.replay_fraction": 0.5, "thinking.replay_size": 2048},
    # System 1 for comparison: detached steps, loss on every step, no replay
    "s1": {**_OFF, "thinking.system": "s1"},
}
# a problem's own refinement of a recipe, applied after it (before the user's overrides). Addition with Langevin
# noise σ = 0.05 while training: validation range 1.5, 8 steps, MSE 2.68e-4 vs 2.97e-4 without, lower on each of
# 3 seeds; random α (jitter 2) 5.4e-3 and the contrastive term 1.8e-2 lose (docs/reasoning.md §3)
PROBLEM_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "addition": {"s2": {"thinking.langevin_sigma": 0.05}},
}


def preset(name: str, problem: str = "addition", model: str = "ebt", system: str | None = None,
           **overrides: Any) -> ReasonRunConfig:
    return ReasonTask.preset(name, system, **{"data.problem": problem, "model.model": model, **overrides})


# ------------------------------------------------------------------------------------------ objectives
def answer_loss(shape: Shape, cand: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE (continuous) or per-cell cross-entropy of the candidate's logits (categorical)."""
    if shape.kind == "continuous":
        return F.mse_loss(cand, y)
    return F.cross_entropy(cand.reshape(-1, shape.classes), y.reshape(-1))


def near_misses(shape: Shape, y: torch.Tensor, k: int, noise: float, gen: torch.Generator | None) -> torch.Tensor:
    """``k`` near misses of each answer (k·B rows): ``y + N(0, noise²)``, or the one-hot answer with a fraction
    ``noise`` of its cells (at least one) moved to another class."""
    dev = y.device
    gdev = gen.device if gen is not None else dev
    if shape.kind == "continuous":
        yk = y.repeat(k, *([1] * (y.dim() - 1)))
        return yk + noise * torch.randn(yk.shape, generator=gen, device=gdev).to(dev)
    K = shape.classes
    yk = y.repeat(k, *([1] * (y.dim() - 1)))
    cells = yk.flatten(1)
    flip = torch.rand(cells.shape, generator=gen, device=gdev).to(dev) < noise
    first = torch.randint(cells.shape[1], (cells.shape[0],), generator=gen, device=gdev).to(dev)
    flip[torch.arange(cells.shape[0], device=dev), first] = True
    shift = torch.randint(1, K, cells.shape, generator=gen, device=gdev).to(dev)
    wrong = torch.where(flip, (cells + shift) % K, cells).reshape(yk.shape)
    return F.one_hot(wrong, K).to(torch.float32)


def target_point(shape: Shape, y: torch.Tensor) -> torch.Tensor:
    """The true answer as the energy reads it (one-hot probabilities for categorical answers)."""
    return y if shape.kind == "continuous" else F.one_hot(y, shape.classes).to(torch.float32)


def contrastive_loss(model, x: torch.Tensor, y: torch.Tensor, cfg: ReasonRunConfig, gen) -> torch.Tensor:
    """IRED's contrastive term: cross-entropy of the true answer against near misses under ``softmax(−E)``."""
    shape, k = cfg.shape, cfg.contrastive_negatives
    pos = model.energy(x, target_point(shape, y))                            # B
    xk = x.repeat(k, *([1] * (x.dim() - 1)))
    neg = model.energy(xk, near_misses(shape, y, k, cfg.contrastive_noise, gen)).view(k, -1)   # k, B
    logits = -torch.cat([pos.unsqueeze(0), neg], 0).transpose(0, 1)          # B, 1+k
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


class ReplayBank:
    """One :class:`~ebtkit.core.replay.ReplayBuffer` per instance shape (graph size, sequence length): a record
    holds the problem and its answer packed in one row, and the final candidate."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.buffers: dict[str, ReplayBuffer] = {}

    @staticmethod
    def key(x: torch.Tensor) -> str:
        return "x".join(str(s) for s in x.shape[1:])

    def extend(self, fraction, x, y, y0, gen):
        """Append replayed rows (problems, answers, stored candidates) after the fresh ones."""
        buf = self.buffers.get(self.key(x))
        if buf is None:
            return x, y, y0, 0
        packed = torch.cat([x.flatten(1), y.flatten(1).to(x.dtype)], 1)
        packed, y0, n = extend_with_replay(buf, fraction, packed, y0, gen)
        xs = packed[:, : x[0].numel()].reshape((-1,) + x.shape[1:])
        ys = packed[:, x[0].numel():].reshape((-1,) + y.shape[1:]).to(y.dtype)
        return xs, ys, y0, n

    def push(self, x, y, final) -> None:
        k = self.key(x)
        if k not in self.buffers:
            self.buffers[k] = ReplayBuffer(self.capacity)
        self.buffers[k].push(torch.cat([x.flatten(1), y.flatten(1).to(x.dtype)], 1).detach(), final.detach())

    def files(self) -> dict[str, bytes]:
        return {f"replay_{k}.safetensors": b.to_bytes() for k, b in self.buffers.items()}

    def restore(self, ckpt_dir: Path) -> None:
        for f in sorted(ckpt_dir.glob("replay_*.safetensors")):
            self.buffers[f.name[len("replay_"):-len(".safetensors")]] = ReplayBuffer.from_bytes(f.read_bytes())


def reason_loss(model, x: torch.Tensor, y: torch.Tensor, cfg: ReasonRunConfig, gen: torch.Generator | None,
                replay: ReplayBank | None = None):
    """The training loss of any reasoning model on a batch ``(x, y)``; returns ``(loss, metrics)``."""
    shape, tc = cfg.shape, cfg.thinking
    fresh = x.shape[0]
    if cfg.model.model == "feedforward":
        pred = model(x)
        loss = answer_loss(shape, pred, y)
        return loss, {"loss": loss.detach()}
    y0 = model.initial_candidates(x, gen)
    n_rep = 0
    if replay is not None and tc.replay_fraction > 0:
        x, y, y0, n_rep = replay.extend(tc.replay_fraction, x, y, y0, gen)
    metrics: dict[str, torch.Tensor] = {}
    if is_energy_model(model):
        spec = ThinkingSpec.training(tc, 1, gen)
        if cfg.unroll == "all":
            spec = dataclasses.replace(spec, grad_steps="all")
        traj = spec.run(model.energy_fn(x), y0, model.step_size(), gen)
        loss, per_step = spec.step_losses(traj, lambda c: answer_loss(shape, c, y))
        final = traj.final
        metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
        metrics["alpha"] = model.step_size().detach()
        metrics["loss_first"] = per_step[0].detach()
        if tc.contrastive_coeff > 0:
            c = contrastive_loss(model, x[:fresh], y[:fresh], cfg, gen)
            metrics["contrastive"] = c.detach()
            loss = loss + tc.contrastive_coeff * c
        steps = spec.steps
    else:
        steps = sample_steps(tc, gen, training=True)
        ys = model.iterate(x, y0, steps)
        per = [answer_loss(shape, c, y) for c in ys[1:]]
        loss = torch.stack(per).mean() if tc.system == "s1" else per[-1]
        final = ys[-1]
        metrics["loss_first"] = per[0].detach()
    if replay is not None and tc.replay_fraction > 0:
        replay.push(x[:fresh], y[:fresh], final[:fresh])
    metrics["loss"] = loss.detach()
    metrics["loss_final"] = answer_loss(shape, final.detach(), y).detach()
    metrics["steps"] = torch.tensor(float(steps))
    if replay is not None:
        metrics["replayed"] = torch.tensor(float(n_rep))
    return loss, metrics


def batch_tensors(x: np.ndarray, y: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def instances(problem: Problem, n: int, difficulty: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed instances at ``difficulty`` (the same for every run: seeded by ``seed`` and the difficulty)."""
    rng = np.random.default_rng([seed, list(PROBLEMS).index(problem.name), int(round(difficulty * 1000))])
    return problem.sample(n, difficulty, rng)


class ReasonTask(Task):
    """Reasoning problems: the EBT, the feed-forward and the looped model; ``val_error`` at the validation
    difficulty."""

    name = "reason"
    config_class = ReasonRunConfig
    presets = PRESETS
    recipes = RECIPES
    models = ("ebt", "feedforward", "looped")
    flags: ClassVar[dict[str, str]] = {"model": "model.model", "steps": "train.steps", "batch_size": "train.batch_size",
                                       "lr": "train.lr", "alpha": "model.alpha", "seed": "train.seed",
                                       "think_steps": "thinking.steps", "problem": "data.problem"}
    headline = "val_error"
    ebt_only: ClassVar[tuple[str, ...]] = ("alpha",)

    def __init__(self, cfg: ReasonRunConfig):
        super().__init__(cfg)
        self.problem = cfg.data.make()
        self.bank: ReplayBank | None = None
        self._val = None

    @classmethod
    def default_system(cls, preset: str) -> str:
        return "s2"

    @classmethod
    def preset_variants(cls) -> list[str]:
        """Each problem's table (architecture, width, thinking steps, LR; the ``cpu`` preset also takes its
        ``train.*``) and its refinement of a recipe, as ``ebt presets`` shows them."""
        lines = ["problems (--task reason --problem; set on top of the preset, before the recipe):"]
        for problem, over in PROBLEM_PRESETS.items():
            lines.append(f"  {problem:<12} " + " ".join(f"{k}={v}" for k, v in over.items()))
            for system, extra in PROBLEM_RECIPES.get(problem, {}).items():
                lines.append(f"  {'':<12} with recipe {system}: " + " ".join(f"{k}={v}" for k, v in extra.items()))
        lines.append("  (the sizes below are the default problem's, addition; `ebt train --task reason --problem P` "
                     "prints P's)")
        return lines

    @classmethod
    def preset(cls, name: str, system: str | None = None, **overrides: Any) -> ReasonRunConfig:
        """Size preset ← the problem's table (architecture, width, steps, LR; tiny shrinks it) ← thinking recipe ←
        overrides. The problem is ``overrides["data.problem"]`` (default addition)."""
        problem = overrides.get("data.problem", "addition")
        if problem not in PROBLEM_PRESETS:
            raise ConfigError(f"unknown problem {problem!r}; choose from {', '.join(PROBLEM_PRESETS)}")
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        table = {**PROBLEM_PRESETS[problem], **PRESETS[name], "data.problem": problem}
        if name == "cpu":
            table.update({k: v for k, v in PROBLEM_PRESETS[problem].items() if k.startswith("train.")})
        if name == "tiny":
            table.update(_TINY_SIZE)
        if name == "gpu":
            table.update(_GPU_SIZE.get(problem, {}))
        presets = {name: table}
        refine = PROBLEM_RECIPES.get(problem, {}).get(system or cls.default_system(name), {})
        return resolve_preset(ReasonRunConfig, presets, RECIPES, name, system,
                              {**refine, "data.problem": problem, **overrides}, "s2")

    @classmethod
    def build_model(cls, cfg: ReasonRunConfig) -> nn.Module:
        return build_reason_model(cfg.shape, cfg.model)

    def setup(self, ckpt_dir: Path | None) -> ReasonRunConfig:
        t = self.cfg.thinking
        if self.cfg.model.model != "feedforward" and t.replay_fraction > 0:
            self.bank = ReplayBank(t.replay_size)
        return self.cfg

    def checkpoint_files(self) -> dict[str, bytes]:
        return self.bank.files() if self.bank is not None else {}

    def restore(self, ckpt_dir: Path, main: bool) -> None:
        if self.bank is not None and main:
            self.bank.restore(ckpt_dir)

    def loss(self, model, generator):
        dev = model_device(model)
        host = host_generator(generator)
        seed = int(torch.randint(2 ** 62, (1,), generator=host))              # the step's numpy stream
        x, y, _ = self.problem.sample_train(self.cfg.train.batch_size, np.random.default_rng(seed))
        x, y = batch_tensors(x, y, dev)
        return reason_loss(model, x, y, self.cfg, generator, self.bank)

    def evaluate(self, model) -> dict[str, float]:
        from ..eval.reason import answer, instance_metrics   # noqa: PLC0415 (eval imports tasks' helpers)
        dev = model_device(model)
        c = self.cfg.data
        res: dict[str, float] = {}
        was = model.training
        model.eval()
        for tag, d in (("id", c.id_difficulty), ("val", c.val)):
            x, y = instances(self.problem, c.val_instances, d, VAL_SEED)
            x, y = batch_tensors(x, y, dev)
            steps = self.cfg.thinking.default_eval_steps
            out = answer(model, x, steps, torch.Generator(device=dev).manual_seed(0))
            m = instance_metrics(self.cfg.shape, out.candidates[-1], y)
            if self.cfg.shape.kind == "continuous":
                res[f"{tag}_mse"] = float(m["mse"].mean())
                res[f"{tag}_error"] = res[f"{tag}_mse"]
            else:
                res[f"{tag}_cell_acc"] = float(m["cell_acc"].mean())
                res[f"{tag}_exact_acc"] = float(m["exact_acc"].mean())
                res[f"{tag}_error"] = 1.0 - res[f"{tag}_cell_acc"]
        model.train(was)
        return res

    def eval_line(self, res: dict) -> str:
        c = self.cfg.data
        if self.cfg.shape.kind == "continuous":
            return f"MSE {res['id_mse']:.4g} in distribution, {res['val_mse']:.4g} at validation difficulty {c.val:g}"
        return (f"cell accuracy {res['id_cell_acc']:.3f} in distribution, {res['val_cell_acc']:.3f} at validation "
                f"difficulty {c.val:g} (exact {res['val_exact_acc']:.3f})")

    def describe(self, model) -> str:
        c = self.cfg
        lo, hi = c.data.train_range
        extra = f", {c.thinking.system} {c.thinking.steps}–{c.thinking.max_steps or c.thinking.steps} steps" \
            if c.model.model != "feedforward" else ""
        return (f"model {c.model.model} ({c.preset}, arch {c.model.arch}{extra}): "
                f"{sum(p.numel() for p in model.parameters()):,} parameters; problem {c.data.problem} "
                f"({self.problem.knob}), training difficulty {lo:g}–{hi:g}, validation {c.data.val:g}")


__all__ = ["ReasonRunConfig", "ReasonDataConfig", "ReasonTask", "PRESETS", "PROBLEM_PRESETS", "RECIPES",
           "PROBLEM_RECIPES", "preset",
           "reason_loss", "answer_loss", "contrastive_loss", "near_misses", "instances", "ReplayBank",
           "VAL_SEED", "TEST_SEED"]
