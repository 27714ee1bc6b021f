"""Denoising evaluation: PSNR and MSE (0–255 pixels) against network evaluations (NFEs), EBT vs DiT.

Protocol (Gladstone et al. 2025, §4.7 / Table 4): test images x_0 in [−1, 1] are noised once per noise level
σ (a fraction of the diffusion schedule: t = σ·T − 1) with noise drawn from one seeded generator, so every
model sees *the same* noisy images. Then

* the EBT thinks from the noisy image, ``ŷ_0 = x_t``, ``ŷ_{k+1} = ŷ_k − α∇E(ŷ_k)``: k steps = k NFEs
  (each NFE is a forward pass plus a backward pass to the input);
* the DiT runs DDIM (η = 0) from t to 0 with n network evaluations = n NFEs (forward passes), and, as in the
  paper's "3 forward passes vs 300", optionally re-applies a whole DDIM chain to its own output.

MSE is the mean squared error on [0, 255] after clamping, averaged over all pixels of all images; PSNR is
``10·log10(255² / MSE)`` of that mean (this reproduces the paper's Table 4 pairs, e.g. MSE 142.98 ↔ 26.58 dB).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data.images import to_float, to_uint8_range
from .models.diffusion import GaussianDiffusion
from .thinking import think

CHUNK = 250          # images per forward pass at evaluation (results do not depend on it)


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on the 0–255 scale; ``inf`` for a perfect reconstruction."""
    if mse < 0:
        raise ValueError(f"MSE must be >= 0, got {mse}")
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def pixel_mse(pred: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image MSE on the 0–255 scale after clamping: (B, C, H, W) × 2 → (B,) float64."""
    d = to_uint8_range(pred).double() - to_uint8_range(clean).double()
    return d.pow(2).flatten(1).mean(1)


@dataclass
class EvalSpec:
    sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2])
    ebt_nfe: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10])
    dit_nfe: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10, 100])
    dit_full: bool = True             # also the full DDIM chain (t + 1 steps) when it is not in dit_nfe
    dit_recurse: list[int] = field(default_factory=lambda: [3])   # re-apply a 100-step chain k times (paper: 3)
    recurse_steps: int = 100
    images: int = 500
    seed: int = 0

    def __post_init__(self):
        if not self.sigmas or any(not 0 < s <= 1 for s in self.sigmas):
            raise ValueError(f"noise levels must be in (0, 1], got {self.sigmas}")
        for name in ("ebt_nfe", "dit_nfe", "dit_recurse"):
            if any(int(n) < 1 for n in getattr(self, name)):
                raise ValueError(f"{name} must hold positive integers, got {getattr(self, name)}")
        if self.images < 1 or self.recurse_steps < 1:
            raise ValueError("images and recurse_steps must be >= 1")


def ebt_trajectory(model, x_t: torch.Tensor, steps: int, alpha: torch.Tensor | None = None):
    """Think ``steps`` steps from the noisy images; returns (candidates ŷ_0..ŷ_steps, energies E(ŷ_0..ŷ_steps))."""
    a = model.step_size().detach() if alpha is None else alpha
    tr = think(model.energy_fn(), x_t, steps=steps, alpha=a, create_graph=False, final_energy=True)
    return [c.detach() for c in tr.candidates], [e.detach() for e in tr.energies]


def dit_denoise(model, diffusion: GaussianDiffusion, x_t: torch.Tensor, t: int, n: int, repeat: int = 1) -> torch.Tensor:
    """DDIM with ``n`` NFEs from timestep ``t``, applied ``repeat`` times to its own output (n·repeat NFEs)."""
    x = x_t
    for _ in range(repeat):
        x = diffusion.ddim_sample(model, x, t, n)
    return x


def _dit_schedule(spec: EvalSpec, t: int) -> list[tuple[int, int]]:
    """(steps per chain, chains) pairs for the DiT at timestep t, sorted by total NFEs."""
    plan = {(n, 1) for n in spec.dit_nfe if n <= t + 1}
    if spec.dit_full:
        plan.add((t + 1, 1))
    n = min(spec.recurse_steps, t + 1)
    plan |= {(n, k) for k in spec.dit_recurse}
    return sorted(plan, key=lambda p: (p[0] * p[1], p[1]))


def evaluate(models: dict[str, torch.nn.Module], test: torch.Tensor, diffusion: GaussianDiffusion,
             spec: EvalSpec, sample_count: int = 8) -> dict:
    """Evaluate each model (``ImageEBT`` or ``DiT``, told apart by ``energy_fn``) on the same noisy images.

    Args:
        models: label → model.
        test: uint8 (N, C, H, W) test images; the first ``spec.images`` are used.
    Returns:
        ``{"images", "seed", "levels": [{"sigma", "t", "noise_std", "noisy": {...}, "models": {label: [row]}}],
        "samples": {...}}`` with rows ``{"nfe", "mse", "psnr", "method"[, "energy"]}``.
    """
    clean = to_float(test[: spec.images])                                     # N,C,H,W
    gen = torch.Generator().manual_seed(spec.seed)
    levels, samples = [], {"clean": clean[:sample_count]}
    for sigma in spec.sigmas:
        t = diffusion.t_for_sigma(sigma)
        noise = torch.randn(clean.shape, generator=gen)
        x_t = diffusion.q_sample(clean, t, noise)                            # N,C,H,W
        key = f"{sigma:g}"
        samples[f"noisy@{key}"] = x_t[:sample_count]
        level = {"sigma": sigma, "t": t, "noise_std": diffusion.noise_std(t),
                 "noisy": _score(pixel_mse(x_t, clean)), "models": {}}
        for label, model in models.items():
            model.eval()
            rows = []
            if hasattr(model, "energy_fn"):
                steps = max(spec.ebt_nfe)
                mse = torch.zeros(steps + 1, len(clean), dtype=torch.float64)
                energy = torch.zeros(steps + 1, dtype=torch.float64)
                for i in range(0, len(clean), CHUNK):
                    cands, energies = ebt_trajectory(model, x_t[i:i + CHUNK], steps)
                    for k, c in enumerate(cands):
                        mse[k, i:i + CHUNK] = pixel_mse(c, clean[i:i + CHUNK])
                        energy[k] += energies[k].double().sum()
                        if i == 0 and k in spec.ebt_nfe:
                            samples[f"{label}@{key}/{k}"] = c[:sample_count]
                for k in sorted(set(spec.ebt_nfe)):
                    rows.append({"nfe": k, "method": "think", **_score(mse[k]), "energy": float(energy[k]) / len(clean)})
            else:
                for n, reps in _dit_schedule(spec, t):
                    mse = torch.zeros(len(clean), dtype=torch.float64)
                    for i in range(0, len(clean), CHUNK):
                        out = dit_denoise(model, diffusion, x_t[i:i + CHUNK], t, n, reps)
                        mse[i:i + CHUNK] = pixel_mse(out, clean[i:i + CHUNK])
                        if i == 0 and reps == 1 and (n in spec.ebt_nfe or n == t + 1 or n == spec.recurse_steps):
                            samples[f"{label}@{key}/{n}"] = out[:sample_count]
                    rows.append({"nfe": n * reps, "method": "ddim" if reps == 1 else f"ddim {n}x{reps}", **_score(mse)})
            level["models"][label] = rows
        levels.append(level)
    return {"images": len(clean), "seed": spec.seed, "levels": levels, "samples": samples}


def _score(mse: torch.Tensor) -> dict:
    m = float(mse.mean())
    return {"mse": m, "psnr": psnr(m)}


# ---------------------------------------------------------------------------------------------- output
def format_table(result: dict) -> str:
    """One block per noise level: rows by NFE, two columns (PSNR dB, MSE) per model."""
    lines = []
    for lv in result["levels"]:
        labels = list(lv["models"])
        lines.append(f"σ = {lv['sigma']:g} (t = {lv['t']}, noise std {lv['noise_std']:.3f}); noisy input: "
                     f"PSNR {lv['noisy']['psnr']:.2f} dB, MSE {lv['noisy']['mse']:.1f}; {result['images']} images")
        head = f"{'NFE':>12}" + "".join(f"{lab + ' PSNR':>16}{lab + ' MSE':>14}" for lab in labels)
        lines += [head, "-" * len(head)]
        keys = sorted({(r["nfe"], r["method"] if r["method"].startswith("ddim ") else "") for rs in lv["models"].values() for r in rs},
                      key=lambda k: (k[0], k[1]))
        for nfe, method in keys:
            cells = f"{(str(nfe) + (' (' + method.split(' ')[1] + ')' if method else '')):>12}"
            for lab in labels:
                row = next((r for r in lv["models"][lab] if r["nfe"] == nfe and
                            (r["method"] if r["method"].startswith("ddim ") else "") == method), None)
                cells += f"{row['psnr']:>16.2f}{row['mse']:>14.1f}" if row else f"{'—':>16}{'—':>14}"
            lines.append(cells)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot_psnr(result: dict, path: Path) -> None:
    """PSNR vs NFE (log x-axis), one line per model and noise level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(result["levels"]), figsize=(5.5 * len(result["levels"]), 4), squeeze=False)
    for ax, lv in zip(axes[0], result["levels"]):
        for lab, rows in lv["models"].items():
            chain = [r for r in rows if not r["method"].startswith("ddim ")]
            ax.plot([r["nfe"] for r in chain], [r["psnr"] for r in chain], marker="o", label=lab)
            rec = [r for r in rows if r["method"].startswith("ddim ")]
            if rec:
                ax.plot([r["nfe"] for r in rec], [r["psnr"] for r in rec], marker="x", ls="--",
                        label=f"{lab} (DDIM chain re-applied)")
        ax.axhline(lv["noisy"]["psnr"], color="grey", ls=":", label="noisy input")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations (NFE)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"σ = {lv['sigma']:g} (t = {lv['t']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(result: dict, path: Path, nfes: tuple[int, ...] = (1, 3)) -> None:
    """Grid of clean / noisy / each model at ``nfes`` NFEs (and the DiT's ≥ 100-step chains) per noise level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = result["samples"]
    rows = [("clean", s["clean"])]
    for lv in result["levels"]:
        key = f"{lv['sigma']:g}"
        rows.append((f"noisy σ={key}", s[f"noisy@{key}"]))
        for lab in lv["models"]:
            for name in sorted((k for k in s if k.startswith(f"{lab}@{key}/")), key=lambda k: int(k.rsplit("/", 1)[1])):
                n = int(name.rsplit("/", 1)[1])
                if n in nfes or n >= 100:
                    rows.append((f"{lab} {n} NFE", s[name]))
    imgs = [to_uint8_range(x).numpy() / 255.0 for _, x in rows]                   # each (k, C, H, W)
    k = imgs[0].shape[0]
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k + 1.4, 1.1 * len(rows)), squeeze=False)
    for r, ((label, _), arr) in enumerate(zip(rows, imgs)):
        for c in range(k):
            ax = axes[r][c]
            img = arr[c].transpose(1, 2, 0)
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ run driver
def _load_run(path: Path):
    from . import checkpoint as ckpt
    meta = ckpt.read_config(path)
    if meta["task"] != "denoise":
        raise ValueError(f"{path} is a {meta['task']!r} run, not a denoising run")
    return ckpt.load(path)


def evaluate_runs(run: Path, compare: Path | None, spec: EvalSpec, use_run_sigmas: bool = True,
                  quiet: bool = False) -> dict:
    """Evaluate the run in ``run`` (and ``compare``, on the same noisy test images); print the table and write
    ``eval_denoise.json``, ``psnr_vs_nfe.png`` and ``samples.png`` into ``run``. Returns the JSON dict."""
    from .checkpoint import CKPT
    from .data.images import load_image_data
    models = {}
    first = _load_run(run)
    cfg = first.run_config
    for path, model in ((run, first), (compare, _load_run(compare) if compare else None)):
        if model is None:
            continue
        c = model.run_config
        if (c.model.image_size, c.model.channels) != (cfg.model.image_size, cfg.model.channels):
            raise ValueError(f"{path} works on {c.model.channels}×{c.model.image_size}² images, {run} on "
                             f"{cfg.model.channels}×{cfg.model.image_size}²")
        if (c.noise.diffusion_steps, c.noise.beta_start, c.noise.beta_end) != \
                (cfg.noise.diffusion_steps, cfg.noise.beta_start, cfg.noise.beta_end):
            raise ValueError(f"{path} and {run} use different diffusion schedules; their noise levels differ")
        label = "EBT" if c.model.model == "ebt" else "DiT"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label] = model
    if use_run_sigmas:
        spec = EvalSpec(**{**spec.__dict__, "sigmas": list(cfg.noise.eval_sigmas)})
    data = load_image_data(cfg.data, cfg.model.image_size, cfg.model.channels)
    spec = EvalSpec(**{**spec.__dict__, "images": min(spec.images, len(data.test))})
    diffusion = cfg.noise.diffusion()
    result = evaluate(models, data.test, diffusion, spec)
    out_dir = run if (run / CKPT).exists() or not (run / "config.json").exists() else run.parent
    summary = {k: v for k, v in result.items() if k != "samples"}
    summary.update(run=str(run), compare=str(compare) if compare else None, data=data.source,
                   params={lab: sum(p.numel() for p in m.parameters()) for lab, m in models.items()},
                   train_steps={lab: m.run_config.train.steps for lab, m in models.items()})
    tmp = out_dir / "eval_denoise.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out_dir / "eval_denoise.json")
    plot_psnr(result, out_dir / "psnr_vs_nfe.png")
    plot_samples(result, out_dir / "samples.png")
    if not quiet:
        print(format_table(result), end="")
        print(f"eval: {out_dir / 'eval_denoise.json'}, {out_dir / 'psnr_vs_nfe.png'}, {out_dir / 'samples.png'}")
    return summary
