"""The image-denoising task: configs and presets, the two objectives, the training loop and the CLI hooks.

Paper setup (Gladstone et al. 2025, §4.7; see docs/images.md): images are noised with a DDPM linear-β schedule at
a level σ given as a fraction of the schedule (train σ = 0.1; evaluate σ = 0.1 and the unseen σ = 0.2).

* **EBT** (``ImageEBT``): the candidate starts at the noisy image ``x_t`` (t = t(σ_train), fixed) and thinks with
  :func:`ebtkit.thinking.think`; the per-step loss (MSE, or SmoothL1) against the clean image goes on every step
  (System 1: detached between steps) or on the last (System 2: no detach, truncated), back-propagated through
  the thinking steps (second order). The EBT is never told the noise level.
* **DiT**: ε-prediction with DDPM's simple loss at ``t ~ U{0 … t(σ_train)}`` (the paper trains its DiT on the
  same range of noise levels); sampled with DDIM at evaluation (:mod:`ebtkit.denoise_eval`).

Both models are built from one adaLN-Zero block stack at the same size, trained on the same batches with the
same optimizer, learning-rate schedule and number of optimizer steps. The training loop mirrors
:mod:`ebtkit.train` (same LR schedule, parameter groups with α in its own group, per-step generators, JSONL
metrics, atomic checkpoints, bit-for-bit ``--resume``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .config import ThinkingConfig, TrainConfig
from .data.images import ImageDataConfig, get_image_batch, load_image_data, resolve_dataset, to_float
from .denoise_eval import EvalSpec, pixel_mse, psnr
from .models.diffusion import GaussianDiffusion
from .models.image import ImageModelConfig, build_image_model, count_params
from .thinking import think
from .train import (JsonlLogger, _progress, _truncate_metrics, lr_factor, make_optimizer, optimizer_step, step_generator,
                    train_record)

TASK = "denoise"
LOSSES = ("mse", "smooth_l1")


class DenoiseError(ValueError):
    """Bad input for a denoising run (one-line message for the CLI)."""


@dataclass
class NoiseConfig:
    """The diffusion schedule, the paper's noise levels σ (fractions of it) and the EBT's per-step loss."""

    diffusion_steps: int = 1000     # T (DDPM)
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    train_sigma: float = 0.1        # EBT trains at t(σ); DiT at t ~ U{0..t(σ)}
    eval_sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2])
    loss: str = "mse"               # EBT per-step reconstruction loss: "mse" | "smooth_l1" (the paper's code)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        self.eval_sigmas = [float(s) for s in self.eval_sigmas]
        for s in [self.train_sigma, *self.eval_sigmas]:
            if not 0 < s <= 1:
                raise ValueError(f"noise levels are fractions of the schedule in (0, 1], got {s}")
        self.diffusion().t_for_sigma(self.train_sigma)       # validates the schedule

    def diffusion(self) -> GaussianDiffusion:
        return GaussianDiffusion(self.diffusion_steps, self.beta_start, self.beta_end)


_SECTIONS = {"model": ImageModelConfig, "thinking": ThinkingConfig, "train": TrainConfig, "noise": NoiseConfig,
             "data": ImageDataConfig}


@dataclass
class DenoiseRunConfig:
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    preset: str = "cpu"

    def __post_init__(self):
        t = self.thinking
        if t.replay_fraction > 0 or t.contrastive_coeff > 0:
            raise ValueError("the replay buffer and the contrastive term are not implemented for images")
        if self.model.n_landscapes > t.default_eval_steps and self.model.model == "ebt":
            raise ValueError(f"n_landscapes={self.model.n_landscapes} exceeds the thinking steps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DenoiseRunConfig":
        """Rebuild from JSON; unknown keys are an error."""
        unknown = set(d) - set(_SECTIONS) - {"preset"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        parts = {}
        for name, klass in _SECTIONS.items():
            sub = d.get(name, {})
            extra = set(sub) - {f.name for f in fields(klass)}
            if extra:
                raise ValueError(f"unknown {name} config keys: {sorted(extra)}")
            parts[name] = klass(**sub)
        return cls(**parts, preset=d.get("preset", "custom"))

    def replace(self, **overrides: Any) -> "DenoiseRunConfig":
        """Dotted overrides, e.g. ``replace(**{"model.d_model": 96})``."""
        d = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section not in _SECTIONS or name not in d[section]:
                raise ValueError(f"unknown config key {key!r}")
            d[section][name] = value
        return DenoiseRunConfig.from_dict({**d, "preset": self.preset})


# --------------------------------------------------------------------------------------------- presets
# Tuning of α, steps and sizes: docs/log/images.md. Both models of a preset share every size/optimizer field.
PRESETS: dict[str, dict[str, Any]] = {
    # tests and smoke runs: seconds, on the bundled mini set
    "tiny": {"model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.patch_size": 7,
             "model.mlp_ratio": 2.0, "data.dataset": "mini", "train.steps": 20, "train.batch_size": 8,
             "train.warmup": 5, "train.eval_every": 10, "train.eval_batches": 1, "train.save_every": 10,
             "train.log_every": 5, "train.lr": 1e-3},
    # the documented comparison: a few minutes per model on 2 CPU cores
    "cpu": {"model.d_model": 64, "model.n_layers": 4, "model.n_heads": 4, "model.patch_size": 4,
            "model.mlp_ratio": 2.0, "train.steps": 1500, "train.batch_size": 32, "train.warmup": 100,
            "train.lr": 1e-3, "train.eval_every": 500, "train.eval_batches": 4, "train.save_every": 500,
            "train.log_every": 25},
}

# thinking recipes (paper Table D / §3.1 image columns): S1 = detach + loss on every step, learnable α;
# S2 = no detach, truncated, 2–3 random steps, fixed α jittered in [α/2, 2α], no Langevin noise.
RECIPES: dict[str, dict[str, Any]] = {
    "s1": {"thinking.system": "s1", "thinking.steps": 1, "model.alpha_learnable": True},
    "s2": {"thinking.system": "s2", "thinking.steps": 2, "thinking.max_steps": 3, "thinking.alpha_jitter": 2.0,
           "model.alpha_learnable": False},
}


def preset(name: str, model: str = "ebt", system: str = "s1", **overrides: Any) -> DenoiseRunConfig:
    if name not in PRESETS:
        raise DenoiseError(f"unknown denoise preset {name!r}; choose from {', '.join(PRESETS)}")
    if system not in RECIPES:
        raise DenoiseError(f"unknown system {system!r}; choose from {', '.join(RECIPES)}")
    cfg = DenoiseRunConfig(preset=name)
    cfg = cfg.replace(**{**RECIPES[system], **PRESETS[name], "model.model": model, **overrides})
    cfg.preset = name
    return cfg


# ------------------------------------------------------------------------------------------ objectives
def _recon(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    return F.mse_loss(pred, target) if kind == "mse" else F.smooth_l1_loss(pred, target)


def ebt_denoise_loss(model, clean: torch.Tensor, noisy: torch.Tensor, cfg: DenoiseRunConfig,
                     gen: torch.Generator | None, steps: int):
    """Think from ``noisy`` (B, C, H, W) and score the candidates against ``clean``.

    Returns ``(loss, metrics)``; metrics hold ``mse_step{k}`` (pixel MSE of ŷ_k on [−1, 1]), ``energy_gap``
    (mean E(ŷ_0) − mean E(ŷ_{N−1}), with ≥ 2 steps) and ``alpha``, all as 0-d tensors (no host sync).
    """
    tc = cfg.thinking
    traj = think(model.energy_fn(), noisy, steps=steps, alpha=model.step_size(),
                 landscapes=[min(k, cfg.model.n_landscapes - 1) for k in range(steps)],
                 detach=tc.detach, grad_steps=tc.grad_steps, create_graph=True,
                 langevin_sigma=tc.langevin_sigma, alpha_jitter=tc.alpha_jitter, generator=gen)
    steps_scored = traj.candidates[1:] if tc.system == "s1" else traj.candidates[-1:]
    loss = torch.stack([_recon(c, clean, cfg.noise.loss) for c in steps_scored]).mean()
    metrics = {"loss": loss.detach()}
    for k, c in enumerate(traj.candidates):
        metrics[f"mse_step{k}"] = F.mse_loss(c.detach(), clean)
    if len(traj.energies) > 1:
        metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    return loss, metrics


def dit_loss(model, diffusion: GaussianDiffusion, clean: torch.Tensor, t_max: int, gen: torch.Generator | None):
    """DDPM simple loss at ``t ~ U{0..t_max}`` per image."""
    t = torch.randint(0, t_max + 1, (clean.shape[0],), generator=gen)
    noise = torch.randn(clean.shape, generator=gen)
    loss = diffusion.training_loss(model, clean, t, noise)
    return loss, {"loss": loss.detach()}


def _train_steps(cfg: DenoiseRunConfig, gen: torch.Generator) -> int:
    t = cfg.thinking
    if t.max_steps is None or t.max_steps == t.steps:
        return t.steps
    return int(torch.randint(t.steps, t.max_steps + 1, (1,), generator=gen))


@torch.no_grad()
def quick_val(model, cfg: DenoiseRunConfig, test: torch.Tensor, diffusion: GaussianDiffusion, n: int) -> dict:
    """PSNR at the training noise level on the first ``n`` test images (fixed noise): EBT at its evaluation
    steps; DiT at 1 NFE and a DDIM chain of min(t + 1, 100) steps."""
    clean = to_float(test[:n])
    t = diffusion.t_for_sigma(cfg.noise.train_sigma)
    x_t = diffusion.q_sample(clean, t, torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)))
    was = model.training
    model.eval()
    if hasattr(model, "energy_fn"):
        steps = cfg.thinking.default_eval_steps
        tr = think(model.energy_fn(), x_t, steps=steps, alpha=model.step_size().detach())
        res = {"val_psnr": psnr(float(pixel_mse(tr.final, clean).mean())), "val_nfe": steps}
    else:
        n_full = min(t + 1, 100)
        full = diffusion.ddim_sample(model, x_t, t, n_full)
        one = diffusion.ddim_sample(model, x_t, t, 1)
        res = {"val_psnr": psnr(float(pixel_mse(full, clean).mean())), "val_nfe": n_full,
               "val_psnr_1nfe": psnr(float(pixel_mse(one, clean).mean()))}
    model.train(was)
    return res


# ---------------------------------------------------------------------------------------- training loop
def train(cfg: DenoiseRunConfig | None, out: str | Path, *, resume: bool = False, steps: int | None = None,
          progress: bool = True, log=print) -> dict:
    """Train per ``cfg`` into ``out`` (or continue the run in ``out`` with ``resume=True``; ``steps`` may
    extend it). Everything that can fail on bad input fails before ``out`` is touched."""
    out, start = Path(out), 0
    if resume:
        meta = ckpt.read_config(out)
        if meta["task"] != TASK:
            raise DenoiseError(f"{out} is a {meta['task']!r} run, not a denoising run")
        cfg = DenoiseRunConfig.from_dict(meta["config"])
        start = int(ckpt.read_state(out).get("step", 0))
    elif out.exists() and any(out.iterdir()):
        raise DenoiseError(f"run directory {out} already exists and is not empty; use --resume or another --out")
    if cfg is None:
        raise DenoiseError("no config given")
    if steps is not None:
        cfg = cfg.replace(**{"train.steps": steps})
    if start >= cfg.train.steps:
        raise DenoiseError(f"{out} is already at step {start} of {cfg.train.steps}; pass --steps N > {start} to continue")
    t = cfg.train
    m = cfg.model
    data = load_image_data(cfg.data, m.image_size, m.channels)
    if cfg.data.path is None:      # record the concrete dataset, never "auto"
        cfg = cfg.replace(**{"data.dataset": resolve_dataset(cfg.data)})
    diffusion = cfg.noise.diffusion()
    t_train = diffusion.t_for_sigma(cfg.noise.train_sigma)
    torch.manual_seed(t.seed)
    model = build_image_model(m)
    opt, params = make_optimizer(model, t, out if resume else None)

    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"
    if resume:
        _truncate_metrics(metrics_path, start)
    logger = JsonlLogger(metrics_path)
    n_val = min(len(data.test), t.eval_batches * t.batch_size)

    log(f"model {m.model} ({cfg.preset}, {cfg.thinking.system if m.model == 'ebt' else 'ε-prediction'}): "
        f"{count_params(model) / 1e6:.3f}M parameters ({model.trunk_params() / 1e6:.3f}M in the shared block stack); "
        f"data {data.source}: {len(data.train):,} train / {len(data.test):,} test images {tuple(data.shape)}; "
        f"train σ={cfg.noise.train_sigma:g} (t={t_train})")
    bar = _progress(t.steps, start, progress)
    model.train()
    t0, last_eval = time.time(), {}
    for step in range(start, t.steps):
        f = lr_factor(step, t)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        gen = step_generator(t.seed, step)
        clean = get_image_batch(data.train, t.batch_size, gen)                       # B,C,H,W
        if m.model == "ebt":
            noisy = diffusion.q_sample(clean, t_train, torch.randn(clean.shape, generator=gen))
            loss, metrics = ebt_denoise_loss(model, clean, noisy, cfg, gen, _train_steps(cfg, gen))
        else:
            loss, metrics = dit_loss(model, diffusion, clean, t_train, gen)
        gnorm = optimizer_step(model, loss, opt, params, t.grad_clip)
        done = step + 1
        if done % t.log_every == 0 or done == t.steps or step == start:
            rec = train_record(done, opt, gnorm, metrics)
            logger(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
        if bar is not None:
            bar.update(1)
        if done % t.eval_every == 0 or done == t.steps:
            last_eval = {"step": done, "split": "val", **quick_val(model, cfg, data.test, diffusion, n_val)}
            logger(last_eval)
            log(f"step {done}: val PSNR {last_eval['val_psnr']:.2f} dB at σ={cfg.noise.train_sigma:g} "
                f"({last_eval['val_nfe']} NFE) ({time.time() - t0:.0f}s)")
        if done % t.save_every == 0 or done == t.steps:
            ckpt.save_checkpoint(out, model, cfg.to_dict(), task=TASK, optimizer=opt,
                                 state={"step": done, "val_psnr": last_eval.get("val_psnr"),
                                        "elapsed_s": time.time() - t0})
    if bar is not None:
        bar.close()
    return {"run": str(out), "checkpoint": str(out / ckpt.CKPT), "metrics": str(metrics_path), "step": t.steps,
            "model": m.model, "params": count_params(model), "val_psnr": last_eval.get("val_psnr"),
            "elapsed_s": round(time.time() - t0, 1)}


# ----------------------------------------------------------------------------------------- checkpoints
def build_from_checkpoint(config: dict, ckpt_dir: Path):
    cfg = DenoiseRunConfig.from_dict(config)
    model = build_image_model(cfg.model)
    model.run_config = cfg
    return model


ckpt.register_task(TASK, build_from_checkpoint)



# --------------------------------------------------------------------------------------------- CLI hooks
def add_train_arguments(parser) -> None:
    """Denoise-only options of ``ebt train --task denoise`` (the common ones belong to the CLI)."""
    g = parser.add_argument_group("image denoising (--task denoise)")
    g.add_argument("--dataset", default=None, choices=["auto", "fashion-mnist", "mini"],
                   help="built-in images when --data is not given: Fashion-MNIST (Debian package "
                        "dataset-fashion-mnist), the bundled 640-image 'mini' set, or auto (default: the first available)")
    g.add_argument("--loss", default=None, choices=list(LOSSES), help="EBT per-step reconstruction loss (default mse)")
    g.add_argument("--think-steps", type=int, default=None, help="EBT thinking steps per training batch")
    g.add_argument("--train-sigma", type=float, default=None,
                   help="training noise level as a fraction of the diffusion schedule (default 0.1)")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args) -> DenoiseRunConfig:
    """The run config of ``ebt train --task denoise`` from parsed arguments; raises ValueError on bad input."""
    model = getattr(args, "model", None) or "ebt"
    if model not in ("ebt", "dit"):
        raise DenoiseError(f"unknown model {model!r} for --task denoise; choose from ebt, dit")
    for name in ("context", "tokenizer"):
        if getattr(args, name, None) is not None:
            raise DenoiseError(f"--{name} applies to --task text only")
    system = getattr(args, "system", None)
    if model == "dit" and (system is not None or getattr(args, "alpha", None) is not None
                           or getattr(args, "think_steps", None) is not None or getattr(args, "loss", None) is not None):
        raise DenoiseError("--system, --alpha, --think-steps and --loss apply to --model ebt only")
    overrides: dict[str, Any] = {}
    for key, name in (("train.steps", "steps"), ("train.batch_size", "batch_size"), ("train.lr", "lr"),
                      ("train.seed", "seed"), ("model.alpha", "alpha"), ("data.path", "data"),
                      ("data.dataset", "dataset"), ("noise.loss", "loss"), ("thinking.steps", "think_steps"),
                      ("noise.train_sigma", "train_sigma")):
        val = getattr(args, name, None)
        if val is not None:
            overrides[key] = val
    for item in getattr(args, "set", None) or []:
        key, eq, val = item.partition("=")
        if not eq:
            raise DenoiseError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = _value(val)
    try:
        return preset(getattr(args, "preset", None) or "cpu", model=model, system=system or "s1", **overrides)
    except DenoiseError:
        raise
    except (ValueError, TypeError) as e:
        raise DenoiseError(str(e)) from None


def train_main(args) -> dict:
    """``ebt train --task denoise``: returns ``{"run", "checkpoint", "metrics", "val_psnr", ...}``."""
    progress = not getattr(args, "no_progress", False)
    resume = getattr(args, "resume", None)
    if resume:
        if getattr(args, "out", None):
            raise DenoiseError("give --resume RUN or --out DIR, not both")
        given = [n for n in ("preset", "data", "batch_size", "lr", "system", "alpha", "seed", "dataset", "loss",
                             "think_steps", "train_sigma") if getattr(args, n, None) is not None]
        if given or getattr(args, "set", None):
            raise DenoiseError("--resume continues a run with its saved config; only --steps may change "
                               f"(got {', '.join('--' + n.replace('_', '-') for n in given) or '--set'})")
        return train(None, resume, resume=True, steps=getattr(args, "steps", None), progress=progress)
    cfg = config_from_args(args)
    out = getattr(args, "out", None) or f"runs/denoise-{cfg.model.model}-{cfg.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return train(cfg, out, progress=progress)


def add_eval_arguments(parser) -> None:
    """Options of ``ebt eval`` for denoising runs."""
    g = parser.add_argument_group("image denoising runs")
    g.add_argument("--compare", default=None, metavar="RUN",
                   help="a second denoising run (e.g. the DiT) evaluated on the same noisy images")
    g.add_argument("--images", type=int, default=500, help="test images to evaluate (default 500)")
    g.add_argument("--sigmas", default=None, help="noise levels, e.g. 0.1,0.2 (default: the run's eval_sigmas)")
    g.add_argument("--ebt-nfe", default="1,2,3,5,10", help="EBT thinking steps to report (default 1,2,3,5,10)")
    g.add_argument("--dit-nfe", default="1,2,3,5,10,100",
                   help="DiT DDIM steps to report (default 1,2,3,5,10,100; the full chain is always added)")


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise DenoiseError(f"{name} expects comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise DenoiseError(f"{name} expects positive integers, got {text!r}")
    return vals


def eval_main(run_dir: Path, args) -> dict:
    """``ebt eval RUN`` for a denoising run: prints the PSNR/MSE-vs-NFE table and writes ``eval_denoise.json``,
    ``psnr_vs_nfe.png`` and ``samples.png`` into the run directory."""
    from .denoise_eval import evaluate_runs
    sigmas = getattr(args, "sigmas", None)
    try:
        spec = EvalSpec(ebt_nfe=_ints(getattr(args, "ebt_nfe", None) or "1,2,3,5,10", "--ebt-nfe"),
                        dit_nfe=_ints(getattr(args, "dit_nfe", None) or "1,2,3,5,10,100", "--dit-nfe"),
                        images=int(getattr(args, "images", None) or 500), seed=int(getattr(args, "seed", None) or 0),
                        **({"sigmas": [float(s) for s in sigmas.split(",") if s.strip()]} if sigmas else {}))
    except ValueError as e:
        raise DenoiseError(str(e)) from None
    compare = getattr(args, "compare", None)
    return evaluate_runs(Path(run_dir), Path(compare) if compare else None, spec, use_run_sigmas=not sigmas)


__all__ = ["DenoiseRunConfig", "NoiseConfig", "PRESETS", "RECIPES", "preset", "train", "ebt_denoise_loss",
           "dit_loss", "add_train_arguments", "config_from_args", "train_main", "add_eval_arguments", "eval_main"]
