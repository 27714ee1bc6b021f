"""Metrics and pictures for next-vector / next-frame prediction (time series and video), EBT vs Transformer++.

Pure functions: tensors and dicts in, numbers and files out; no model code. A sequence element is a vector
``x_t ∈ R^F``: a time-series step in data units, or a grayscale video frame flattened row-major
(``F = H·W``, pixels in [0, 1]).

* :func:`frame_mse` — the Moving-MNIST literature's "MSE per frame": squared error **summed** over the H·W
  pixels at [0, 1] scale (not a mean).
* :func:`ssim_frames` — SSIM per frame via scikit-image (``data_range=1``, uniform 7×7 window).
* :func:`horizon_errors` — per-horizon-step and overall MSE / MAE (means over features), and for video the
  summed per-frame MSE and SSIM; per-feature means for small F (time series).
* :func:`energy_error_spearman` — does a lower energy go with a lower error? (Spearman rank correlation.)
* plots: :func:`plot_strip` (frame grid), :func:`write_gif` (animated side by side),
  :func:`plot_error_vs_horizon`, :func:`plot_error_vs_nfe`, :func:`plot_series` (time series rollouts).

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a reader never
sees half a PNG or GIF.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

from .thinking_study import spearman

PER_FEATURE_MAX = 32      # horizon_errors reports per-feature means when F <= this (time series)
SERIES_MAX_PANELS = 8     # plot_series draws at most this many features
GIF_SEPARATOR = 2         # px between panels in write_gif
GIF_BAR = 3               # px: progress bar on top of every GIF frame (also keeps consecutive frames distinct)
GIF_LABEL = 11            # px: label strip under the progress bar
SSIM_HELP = "SSIM needs scikit-image: pip install 'ebtkit[video]'"


# ------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _atomic(path):
    """Yield a temporary path next to ``path`` (same suffix, so writers infer the format); on success it
    replaces ``path`` with ``os.replace``, on failure it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, dpi: int = 120) -> None:
    plt = _pyplot()
    try:
        with _atomic(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str, path) -> None:
    """Labels, grid and legend of a line plot, then save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def _frame_hw(frame_shape, F: int) -> tuple[int, int]:
    if frame_shape is None or len(frame_shape) != 2:
        raise ValueError(f"frame_shape must be (H, W), got {frame_shape}")
    H, W = (int(s) for s in frame_shape)
    if H * W != F:
        raise ValueError(f"frame_shape {H}×{W} = {H * W} does not match the feature dim {F}")
    return H, W


def _as_frames(x: torch.Tensor, frame_shape) -> torch.Tensor:
    """(..., F) → (..., H, W) float64 on the CPU."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    H, W = _frame_hw(frame_shape, x.shape[-1])
    return x.reshape(*x.shape[:-1], H, W)


def _stat(values: torch.Tensor) -> dict:
    """(N, K) per-sequence values → {"per_step": K means over N, "mean": overall mean}."""
    return {"per_step": [float(v) for v in values.mean(0)], "mean": float(values.mean())}


# ------------------------------------------------------------------------------------------ metrics
def frame_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame squared error **summed** over the F = H·W pixels (the Moving-MNIST "MSE per frame" at [0, 1]
    scale, e.g. one pixel off by 0.5 gives 0.25): ``(..., F)`` × 2 → ``(...)`` float64. No clipping."""
    _check_pair(pred, target)
    d = pred.detach().double() - target.detach().double()
    return d.pow(2).sum(-1)


def ssim_frames(pred: torch.Tensor, target: torch.Tensor, frame_shape) -> torch.Tensor:
    """SSIM per frame, ``(..., F)`` × 2 with ``F = H·W`` → ``(...)`` float64.

    Computed by ``skimage.metrics.structural_similarity`` with ``data_range=1.0`` and its defaults
    (``gaussian_weights=False``, uniform 7×7 window), the common Moving-MNIST setting. Both inputs are clipped
    to [0, 1] first (model outputs may overshoot). Frames smaller than 7 pixels on a side use the largest odd
    window that fits (at least 3). Raises ``ImportError`` without scikit-image.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as e:
        raise ImportError(SSIM_HELP) from e
    _check_pair(pred, target)
    p = _as_frames(pred, frame_shape).clamp(0, 1)
    t = _as_frames(target, frame_shape).clamp(0, 1)
    H, W = p.shape[-2:]
    win = min(7, H if H % 2 else H - 1, W if W % 2 else W - 1)
    if win < 3:
        raise ValueError(f"frames of {H}×{W} are too small for SSIM (need at least 3×3)")
    lead = p.shape[:-2]
    p_np, t_np = p.reshape(-1, H, W).numpy(), t.reshape(-1, H, W).numpy()
    out = [structural_similarity(a, b, data_range=1.0, win_size=win) for a, b in zip(p_np, t_np)]
    return torch.tensor(out, dtype=torch.float64).reshape(lead)


def horizon_errors(pred: torch.Tensor, target: torch.Tensor, frame_shape=None, units=None) -> dict:
    """Errors of rollouts ``(N, K, F)`` (N sequences, K future steps; a single ``(K, F)`` rollout is N = 1).

    Returns ``{"mse", "mae"}`` (means over features, in data units² / data units), and for video
    (``frame_shape`` given) also ``"frame_mse"`` (summed over the pixels of a frame, :func:`frame_mse`) and
    ``"ssim"`` (:func:`ssim_frames`); each is ``{"per_step": [K means over sequences], "mean": float}``.
    For time series (no ``frame_shape``) with F <= 32 it adds ``"per_feature": {"mse": [F], "mae": [F],
    "units": units}`` (means over sequences and steps; ``units`` optional, one string per feature) so a report
    can state each feature in its units. Also ``"n"``, ``"steps"``, ``"features"``.
    """
    _check_pair(pred, target)
    if pred.dim() == 2:
        pred, target = pred[None], target[None]
    if pred.dim() != 3:
        raise ValueError(f"rollouts must be (N, K, F), got {tuple(pred.shape)}")
    N, K, F = pred.shape
    if units is not None and len(units) != F:
        raise ValueError(f"units has {len(units)} entries for {F} features")
    p, t = pred.detach().to("cpu", torch.float64), target.detach().to("cpu", torch.float64)
    d = p - t
    out = {"n": N, "steps": K, "features": F,
           "mse": _stat(d.pow(2).mean(-1)), "mae": _stat(d.abs().mean(-1))}
    if frame_shape is not None:
        _frame_hw(frame_shape, F)
        out["frame_mse"] = _stat(frame_mse(p, t))
        out["ssim"] = _stat(ssim_frames(p, t, frame_shape))
    elif F <= PER_FEATURE_MAX:
        out["per_feature"] = {"mse": [float(v) for v in d.pow(2).mean((0, 1))],
                              "mae": [float(v) for v in d.abs().mean((0, 1))],
                              "units": list(units) if units is not None else None}
    return out


def energy_error_spearman(energies: torch.Tensor, errors: torch.Tensor) -> float:
    """Spearman rank correlation between energies and errors (both flattened; ties get average ranks), via
    :func:`ebtkit.eval.thinking_study.spearman`. Positive: lower energy goes with lower error.

    Raises ``ValueError`` if the shapes differ. Pairs where either value is NaN/inf are dropped; NaN if fewer
    than two pairs remain or either side is constant. Memory is quadratic in the number of pairs (the rank
    computation compares all pairs): fine up to ~10⁴ pairs.
    """
    energies, errors = torch.as_tensor(energies), torch.as_tensor(errors)
    if energies.shape != errors.shape:
        raise ValueError(f"shapes differ: {tuple(energies.shape)} vs {tuple(errors.shape)}")
    a = energies.detach().reshape(-1).to("cpu", torch.float64)
    b = errors.detach().reshape(-1).to("cpu", torch.float64)
    keep = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[keep], b[keep]
    if a.numel() < 2:
        return math.nan
    return float(spearman(a, b))


# ------------------------------------------------------------------------------------------ pictures
def _pick(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)``, first and last included (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def plot_strip(target: torch.Tensor, preds: dict[str, torch.Tensor], frame_shape, path,
               observed: torch.Tensor | None = None, max_frames: int = 10) -> None:
    """Frame grid for one sequence: optionally a row of the last observed context frames, then "ground truth"
    with the K future frames (``(K, F)``), then one row per model label (``preds``: label → ``(K, F)``).

    Gray colormap on [0, 1], row labels on the left, "t+k" column titles. With K > ``max_frames`` it shows
    ``max_frames`` evenly spaced steps (first and last included); the context row shows the last
    ``max_frames`` observed frames (``(T0, F)``), titled "t", "t−1", ….
    """
    plt = _pyplot()
    tgt = _as_frames(target, frame_shape)
    if tgt.dim() != 3:
        raise ValueError(f"target must be one sequence (K, F), got {tuple(target.shape)}")
    K = tgt.shape[0]
    rows: list[tuple[str, torch.Tensor]] = [("ground truth", tgt)]
    for label, x in preds.items():
        x = _as_frames(x, frame_shape)
        if x.shape != tgt.shape:
            raise ValueError(f"{label}: prediction {tuple(x.shape)} vs target {tuple(tgt.shape)}")
        rows.append((label, x))
    cols = _pick(K, max(1, int(max_frames)))
    ncols = len(cols)
    obs = None
    if observed is not None:
        obs = _as_frames(observed, frame_shape)
        obs = obs.reshape(-1, *obs.shape[-2:])[-ncols:]
    nrows = len(rows) + (obs is not None)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols + 1.6, 1.15 * nrows + 0.2), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    r0 = 0
    if obs is not None:
        T = obs.shape[0]
        for c in range(T):
            ax = axes[0][ncols - T + c]               # right-aligned: the latest context frame sits last
            ax.imshow(obs[c].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            lag = T - 1 - c
            ax.set_title("t" if lag == 0 else f"t−{lag}", fontsize=8)
        axes[0][0].set_ylabel("observed", rotation=0, ha="right", va="center", fontsize=8)
        r0 = 1
    for r, (label, x) in enumerate(rows, start=r0):
        for c, k in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(x[k].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == r0:
                ax.set_title(f"t+{k + 1}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _to_uint8(frames: torch.Tensor):
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_gif(target: torch.Tensor, preds: dict[str, torch.Tensor], frame_shape, path,
              observed: torch.Tensor | None = None, fps: float = 4, scale: int = 4) -> None:
    """Animated GIF (Pillow, loops forever) of one sequence: panels "ground truth | model 1 | model 2 …" side
    by side, separated by 2 px, each frame upscaled ``scale``× with nearest neighbour.

    GIF frames: first the T0 observed frames (``(T0, F)``; the same frame in every panel), then the K future
    frames (``(K, F)``): T0 + K frames of ``(P·W·scale + 2(P−1)) × (3 + 11 + H·scale)`` pixels for P panels.
    On top of each frame is a progress bar (gray while observed, white while predicting) and a label strip
    drawn with Pillow's default font (labels are best-effort: left blank if text cannot be drawn).
    """
    from PIL import Image, ImageDraw

    tgt = _as_frames(target, frame_shape)
    if tgt.dim() != 3:
        raise ValueError(f"target must be one sequence (K, F), got {tuple(target.shape)}")
    panels = [("ground truth", tgt)]
    for label, x in preds.items():
        x = _as_frames(x, frame_shape)
        if x.shape != tgt.shape:
            raise ValueError(f"{label}: prediction {tuple(x.shape)} vs target {tuple(tgt.shape)}")
        panels.append((label, x))
    obs = None
    if observed is not None:
        obs = _as_frames(observed, frame_shape)
        obs = obs.reshape(-1, *obs.shape[-2:])
    scale = max(1, int(scale))
    H, W = tgt.shape[-2:]
    P = len(panels)
    pw, ph = W * scale, H * scale
    top = GIF_BAR + GIF_LABEL
    width, height = P * pw + GIF_SEPARATOR * (P - 1), top + ph

    T0 = 0 if obs is None else obs.shape[0]
    K = tgt.shape[0]
    n = T0 + K
    obs_u8 = None if obs is None else _to_uint8(obs)
    panel_u8 = [_to_uint8(x) for _, x in panels]

    def label_strip(draw, x0: int, text: str, fill: int) -> None:
        try:
            while text and draw.textlength(text) > pw - 2:
                text = text[:-1]
            draw.text((x0 + 1, GIF_BAR), text, fill=fill)
        except Exception:          # no usable font: labels are optional
            pass

    frames = []
    for i in range(n):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for s in range(1, P):                                  # separators
            x = s * pw + (s - 1) * GIF_SEPARATOR
            draw.rectangle([x, 0, x + GIF_SEPARATOR - 1, height - 1], fill=128)
        bar = max(1, round((i + 1) * width / n))
        draw.rectangle([0, 0, bar - 1, GIF_BAR - 1], fill=140 if i < T0 else 255)
        for p, (label, _) in enumerate(panels):
            x0 = p * (pw + GIF_SEPARATOR)
            if i < T0:
                img, text = obs_u8[i], ("observed" if p else f"observed t−{T0 - 1 - i}")
            else:
                img, text = panel_u8[p][i - T0], (label if p else f"truth t+{i - T0 + 1}")
            tile = Image.fromarray(img).resize((pw, ph), Image.Resampling.NEAREST)
            canvas.paste(tile, (x0, top))
            label_strip(draw, x0, text, 255 if i >= T0 else 170)
        frames.append(canvas)
    with _atomic(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(1, round(1000 / fps)), loop=0)


def plot_error_vs_horizon(curves: dict[str, list[float]], path, ylabel: str, title: str = "",
                          bands: dict[str, tuple[list, list]] | None = None) -> None:
    """Error vs horizon step (1..K), one line per model (``curves``: label → K values, e.g. seed means), with
    optional shaded ``(low, high)`` bands per label (e.g. min/max over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for label, ys in curves.items():
        xs = list(range(1, len(ys) + 1))
        (line,) = ax.plot(xs, [float(y) for y in ys], marker="o", label=label)
        if bands and label in bands:
            lo, hi = bands[label]
            if len(lo) != len(ys) or len(hi) != len(ys):
                raise ValueError(f"{label}: band lengths {len(lo)}/{len(hi)} vs {len(ys)} steps")
            ax.fill_between(xs, [float(v) for v in lo], [float(v) for v in hi], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _finish(fig, ax, "horizon step k (predicting t+k)", ylabel, title, path)


def plot_error_vs_nfe(curves: dict[str, list[tuple[float, float]]], path, ylabel: str, title: str = "") -> None:
    """Error vs NFEs per predicted step (log₂ x-axis), one line per policy/model (``curves``: label →
    ``[(nfe, error), …]``); a label with a single point (e.g. Transformer++, 1 NFE) is drawn as one marker."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    positive = True
    for label, pts in curves.items():
        pts = sorted((float(n), float(e)) for n, e in pts)
        if not pts:
            continue
        positive &= all(n > 0 for n, _ in pts)
        xs, ys = [n for n, _ in pts], [e for _, e in pts]
        if len(pts) == 1:
            ax.plot(xs, ys, marker="*", ms=13, ls="none", label=label, zorder=5)
        else:
            ax.plot(xs, ys, marker="o", label=label)
    if positive:
        from matplotlib.ticker import ScalarFormatter
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    _finish(fig, ax, "NFEs per predicted step", ylabel, title, path)


def plot_series(observed: torch.Tensor, target: torch.Tensor, preds: dict[str, torch.Tensor],
                feature_names, units, path) -> None:
    """Time-series rollouts in data units: one subplot per feature (the first 8), the observed history
    (``(T0, F)``, steps −T0+1..0), then ground truth and each model's rollout (``(K, F)``, steps 1..K, joined to
    the last observed value). ``feature_names`` / ``units``: one string per feature (or None for "x0", … / no
    unit); y-axes are labelled "name [unit]"."""
    plt = _pyplot()
    obs = torch.as_tensor(observed).detach().to("cpu", torch.float64)
    tgt = torch.as_tensor(target).detach().to("cpu", torch.float64)
    if obs.dim() != 2 or tgt.dim() != 2 or obs.shape[1] != tgt.shape[1]:
        raise ValueError(f"observed (T0, F) and target (K, F) expected, got {tuple(obs.shape)}, {tuple(tgt.shape)}")
    T0, F = obs.shape
    K = tgt.shape[0]
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(F)]
    units = list(units) if units is not None else [""] * F
    if len(names) != F or len(units) != F:
        raise ValueError(f"{len(names)} names / {len(units)} units for {F} features")
    ps = {}
    for label, x in preds.items():
        x = torch.as_tensor(x).detach().to("cpu", torch.float64)
        if x.shape != tgt.shape:
            raise ValueError(f"{label}: prediction {tuple(x.shape)} vs target {tuple(tgt.shape)}")
        ps[label] = x
    shown = min(F, SERIES_MAX_PANELS)
    fig, axes = plt.subplots(shown, 1, figsize=(7.5, 1.9 * shown + 0.6), squeeze=False, sharex=True)
    hx = list(range(-T0 + 1, 1))
    fx = list(range(0, K + 1))
    for f in range(shown):
        ax = axes[f][0]
        last = obs[-1, f].item() if T0 else None
        join = (lambda y: [last] + y.tolist()) if T0 else (lambda y: y.tolist())
        xs = fx if T0 else fx[1:]
        ax.plot(hx, obs[:, f].tolist(), color="gray", lw=1.2, label="observed")
        ax.plot(xs, join(tgt[:, f]), color="black", lw=1.6, label="ground truth")
        for label, x in ps.items():
            ax.plot(xs, join(x[:, f]), marker=".", lw=1.2, label=label)
        ax.axvline(0.5, color="gray", ls=":", lw=0.8)
        ax.set_ylabel(f"{names[f]} [{units[f]}]" if units[f] else names[f], fontsize=8)
        ax.grid(alpha=0.3)
        if f == 0:
            ax.legend(fontsize=7, ncol=2 + len(ps))
    axes[-1][0].xaxis.get_major_locator().set_params(integer=True)
    axes[-1][0].set_xlabel("time step (0 = last observed)")
    if F > shown:
        fig.suptitle(f"first {shown} of {F} features", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
