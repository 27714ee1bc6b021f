"""Denoising evaluation: PSNR and MSE (0–255 pixels) against network evaluations (NFEs), EBT vs DiT.

Protocol (Gladstone et al. 2025, §4.7 / Table 4): test images x_0 in [−1, 1] are noised once per noise level
σ (a fraction of the diffusion schedule: t = σ·T − 1) with noise drawn from one seeded generator, so every
model sees *the same* noisy images. Then

* the EBT thinks from the noisy image, ``ŷ_0 = x_t``, ``ŷ_{k+1} = ŷ_k − α∇E(ŷ_k)``: k steps = k NFEs
  (each NFE is a forward pass plus a backward pass to the input), with any System 2 inference policy
  (:class:`~ebtkit.eval.inference.Policy`: best-of-N, accept-lower, early stop, Langevin noise, α) through the
  same path as text;
* the DiT runs DDIM (η = 0) from t to 0 with n network evaluations = n NFEs (forward passes), and, as in the
  paper's "3 forward passes vs 300", optionally re-applies a whole DDIM chain to its own output.

MSE is the mean squared error on [0, 255] after clamping, averaged over all pixels of all images; PSNR is
``10·log10(255² / MSE)`` of that mean (this reproduces the paper's Table 4 pairs, e.g. MSE 142.98 ↔ 26.58 dB).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..core.models.diffusion import GaussianDiffusion
from ..core.thinking import is_energy_model
from ..data.images import to_float, to_uint8_range
from .inference import Policy

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
             spec: EvalSpec, sample_count: int = 8, policy: Policy | None = None) -> dict:
    """Evaluate each model (an EBT — :class:`~ebtkit.core.thinking.EnergyModel` — or a DiT) on the same noisy
    images; EBTs think with ``policy`` (default: plain steps) at each NFE count of ``spec.ebt_nfe``.

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
            if is_energy_model(model):
                base = policy or Policy()
                gen = torch.Generator().manual_seed(spec.seed + 1)
                for k in sorted(set(spec.ebt_nfe)):
                    pol = replace(base, steps=k)
                    mse = torch.zeros(len(clean), dtype=torch.float64)
                    energy = nfe = 0.0
                    for i in range(0, len(clean), CHUNK):
                        x = x_t[i:i + CHUNK]
                        final, _, fe, spent, _ = pol.run(model, model.energy_fn(), lambda s, x=x: x, k,
                                                         model.cfg.n_landscapes, generator=gen)
                        mse[i:i + CHUNK] = pixel_mse(final, clean[i:i + CHUNK])
                        energy += float(fe.double().sum())
                        nfe += float(spent.double().sum())
                        if i == 0:
                            samples[f"{label}@{key}/{k}"] = final[:sample_count]
                    rows.append({"nfe": k, "method": "think", **_score(mse), "energy": energy / len(clean),
                                 "nfe_spent": nfe / len(clean)})
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
    return {"images": len(clean), "seed": spec.seed, "levels": levels, "samples": samples,
            "policy": (policy or Policy()).kwargs()}


def _score(mse: torch.Tensor) -> dict:
    m = float(mse.mean())
    return {"mse": m, "psnr": psnr(m)}


# ---------------------------------------------------------------------------------------------- output
def describe_policy(policy: dict | None) -> str:
    """The EBT's inference policy in words (``Policy.kwargs()``), for the table's header."""
    p = {**Policy().kwargs(), **(policy or {})}
    parts = []
    if p["samples"] > 1:
        pick = "lowest final energy" if p["select"] == "min" else "largest energy drop"
        parts.append(f"best of {p['samples']} samples ({pick}; --samples)")
    if p["accept_lower"]:
        parts.append("a step kept only where it lowers the energy (--accept-lower)")
    if p["tol"] is not None:
        parts.append(f"early stop once |ΔE| < {p['tol']:g} (--tol)")
    if p["langevin_sigma"]:
        parts.append(f"Langevin noise σ = {p['langevin_sigma']:g}")
    if p["alpha"] is not None or p["alpha_mult"] is not None:
        parts.append(f"step size {p['alpha']:g}" if p["alpha"] is not None else f"step size ×{p['alpha_mult']:g}")
    return "; ".join(parts) if parts else "plain thinking (1 sample, every step kept)"


def format_table(result: dict) -> str:
    """One block per noise level: rows by NFE, two columns (PSNR dB, MSE) per model, and for an EBT the NFEs its
    policy spent per image (``NFE`` is its thinking steps per sample: best-of-N spends N times that, early stopping
    less). The header names the EBT's inference policy (``result["policy"]``)."""
    lines = []
    ebt_labels = {lab for lv in result["levels"] for lab, rows in lv["models"].items()
                  if any("nfe_spent" in r for r in rows)}
    if ebt_labels:
        lines += [f"EBT inference policy: {describe_policy(result.get('policy'))}; NFE = thinking steps per sample, "
                  "spent = network evaluations per image", ""]
    for lv in result["levels"]:
        labels = list(lv["models"])
        lines.append(f"σ = {lv['sigma']:g} (t = {lv['t']}, noise std {lv['noise_std']:.3f}); noisy input: "
                     f"PSNR {lv['noisy']['psnr']:.2f} dB, MSE {lv['noisy']['mse']:.1f}; {result['images']} images")
        head = f"{'NFE':>12}" + "".join(f"{lab + ' PSNR':>16}{lab + ' MSE':>14}" +
                                        (f"{lab + ' spent':>14}" if lab in ebt_labels else "") for lab in labels)
        lines += [head, "-" * len(head)]
        keys = sorted({(r["nfe"], r["method"] if r["method"].startswith("ddim ") else "") for rs in lv["models"].values() for r in rs},
                      key=lambda k: (k[0], k[1]))
        for nfe, method in keys:
            cells = f"{(str(nfe) + (' (' + method.split(' ')[1] + ')' if method else '')):>12}"
            for lab in labels:
                row = next((r for r in lv["models"][lab] if r["nfe"] == nfe and
                            (r["method"] if r["method"].startswith("ddim ") else "") == method), None)
                cells += f"{row['psnr']:>16.2f}{row['mse']:>14.1f}" if row else f"{'—':>16}{'—':>14}"
                if lab in ebt_labels:
                    cells += f"{row['nfe_spent']:>14.4g}" if row and "nfe_spent" in row else f"{'—':>14}"
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
