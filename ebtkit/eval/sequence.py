"""Evaluating sequence models: autoregressive rollouts, errors in data units, and the EBT's thinking study.

* :func:`rollout` — given ``T0`` observed vectors, predict ``K`` more, each fed back as an observation. The EBT
  thinks about one next vector at a time against its context cache, which grows by one observation per step
  (no recomputation: :meth:`~ebtkit.core.models.autoregressive.AutoregressiveEBT.encode_context` with a cache);
  best-of-N by energy per predicted vector (Alg. 2 of the paper). The Transformer++ regressor decodes with its
  key/value cache. ``cached=False`` recomputes the context every step (the exact reference the tests compare to).
* :func:`evaluate_sequence` — for one or more runs on the same test windows: teacher-forced next-step MSE/MAE
  (model and data units), rollout error vs horizon (video: summed per-frame MSE and SSIM), the EBT's error vs
  thinking steps and best-of-N (vs NFEs), and whether the energy ranks the error (Spearman), plus pictures.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..core.recipe import landscape_schedule, think_with_energy
from ..core.thinking import is_energy_model
from .inference import steps_text
from .sequence_metrics import (SSIM_HELP, energy_error_spearman, frame_mse, horizon_errors, plot_error_vs_horizon,
                               plot_error_vs_nfe, plot_series, plot_strip, write_gif)


def _starts(model, last: torch.Tensor, samples_sigma: float, generator):
    """Initial candidates per best-of-N sample for one next vector (B×1×F): sample 0 is the model's own start;
    later samples add ``N(0, σ²)`` to it, so a single-start rule (``init="last"``) still has distinct starts."""
    def init(s: int) -> torch.Tensor:
        y = model.initial_candidates(last, generator)
        if s > 0 and samples_sigma > 0:
            noise = torch.randn(y.shape, generator=generator, dtype=y.dtype,
                                device=y.device if generator is None else generator.device)
            y = y + samples_sigma * noise.to(y.device)
        return y
    return init


@torch.no_grad()
def rollout(model, observed: torch.Tensor, horizon: int, *, steps: int | None = None, alpha: float | None = None,
            samples: int = 1, samples_sigma: float = 0.0, select: str = "min", langevin_sigma: float = 0.0,
            generator: torch.Generator | None = None, cached: bool = True) -> dict:
    """Predict ``horizon`` vectors after ``observed`` (B×T0×F), feeding each prediction back.

    Returns ``{"pred": B×K×F, "energy": B×K (EBT: the chosen candidate's final energy) or None,
    "nfe": energy evaluations with gradient per predicted vector}``.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    B, T0, _ = observed.shape
    if not is_energy_model(model):
        cache: list = []
        out = model(observed, cache=cache, start=0)[:, -1:]
        preds = [out]
        for k in range(1, horizon):
            out = model(out, cache=cache, start=T0 + k - 1)
            preds.append(out)
        return {"pred": torch.cat(preds, 1), "energy": None, "nfe": 1}
    if steps is None:
        raise ValueError("an EBT rollout needs the number of thinking steps")
    a = model.step_size().detach()
    if alpha is not None:
        a = torch.full_like(a, float(alpha))
    lands = landscape_schedule(model.cfg.n_landscapes, steps)
    cache = model.encode_context(observed) if cached else None
    seq, last = observed, observed[:, -1:]
    preds, energies = [], []
    for k in range(horizon):
        row = torch.tensor([T0 - 1 + k], device=observed.device)
        fn = model.energy_fn(seq, cache=cache, rows=row)      # cache None: the context is encoded from seq
        best, _, final_e, _, _ = think_with_energy(
            fn, _starts(model, last, samples_sigma, generator), steps=steps, alpha=a, landscapes=lands,
            samples=samples, select=select, langevin_sigma=langevin_sigma, generator=generator, update=model.update)
        preds.append(best)
        energies.append(final_e)
        if cached:
            cache = model.encode_context(best, cache=cache)
        else:
            seq = torch.cat([seq, best], 1)
        last = best
    return {"pred": torch.cat(preds, 1), "energy": torch.cat(energies, 1), "nfe": steps * samples}


@torch.no_grad()
def next_step_predictions(model, windows: torch.Tensor, steps: int | None = None, batch_size: int = 64,
                          generator: torch.Generator | None = None, **policy):
    """Teacher-forced next-vector predictions for windows (N×(S+1)×F): ``(pred N×S×F, energy N×S or None)``.
    The EBT thinks ``steps`` steps (default: the run's evaluation steps) with any inference policy."""
    preds, energies = [], []
    for i in range(0, windows.shape[0], batch_size):
        x = windows[i: i + batch_size, :-1]
        if is_energy_model(model):
            with torch.enable_grad():
                y, traj = model.think(x, steps=steps, generator=generator, **policy)
            preds.append(y.detach())
            energies.append(traj[-1].detach())
        else:
            preds.append(model(x))
    return torch.cat(preds), (torch.cat(energies) if energies else None)


def _batched_rollout(model, observed, horizon, batch_size: int, **kw) -> dict:
    outs = [rollout(model, observed[i: i + batch_size], horizon, **kw) for i in range(0, observed.shape[0], batch_size)]
    energy = None if outs[0]["energy"] is None else torch.cat([o["energy"] for o in outs])
    return {"pred": torch.cat([o["pred"] for o in outs]), "energy": energy, "nfe": outs[0]["nfe"]}


def _headline(errs: dict, video: bool) -> tuple[str, float]:
    return ("frame_mse", errs["frame_mse"]["mean"]) if video else ("mse", errs["mse"]["mean"])


def evaluate_sequence(models: dict[str, tuple[torch.nn.Module, int | None]], data, out_dir: Path, *,
                      max_windows: int = 256, batch_size: int = 64, think_steps=(1, 2, 4, 8), bon=(2, 4, 8),
                      bon_sigma: float = 0.05, seed: int = 0, log=print) -> dict:
    """Evaluate ``models`` (label → (model, evaluation thinking steps or None)) on ``data.test``.

    Windows are split into ``T0 = window − horizon`` observed vectors and ``horizon`` targets. Errors are in data
    units (``data.to_units``); for video (``data.frame_shape``) also the summed per-frame MSE and SSIM at [0, 1].
    Writes the pictures into ``out_dir`` and returns a JSON-able dict.
    """
    if data.frame_shape is not None and importlib.util.find_spec("skimage") is None:
        raise ValueError(SSIM_HELP)                      # before any model runs
    windows = data.test[:max_windows]
    K = data.horizon
    T0 = windows.shape[1] - K
    observed, target = windows[:, :T0], windows[:, T0:]
    video = data.frame_shape is not None
    units_target = data.to_units(target)
    res: dict = {"windows": int(windows.shape[0]), "observed": T0, "horizon": K, "video": video,
                 "units": "pixels in [0, 1]" if video else "data units (" + ", ".join(
                     f"{n} [{u}]" for n, u in zip(data.feature_names, data.units)) + ")",
                 "models": {}}
    rollouts, curves, nfe_curves = {}, {}, {}
    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    for label, (model, steps) in models.items():
        model.eval()
        ebt = is_energy_model(model)
        entry: dict = {"ebt": ebt, "thinking_steps": steps, "params": sum(p.numel() for p in model.parameters()),
                       "non_embedding_params": model.non_embedding_params()}
        # teacher-forced next step, every position of every window
        nxt, nxt_e = next_step_predictions(model, windows, steps, batch_size=batch_size, generator=gen())
        tgt = windows[:, 1:]
        entry["next_step"] = {"mse_model_units": float(((nxt - tgt) ** 2).mean()),
                              "mae_model_units": float((nxt - tgt).abs().mean()),
                              "mse": float(((data.to_units(nxt) - data.to_units(tgt)) ** 2).mean()),
                              "mae": float((data.to_units(nxt) - data.to_units(tgt)).abs().mean())}
        if video:
            entry["next_step"]["frame_mse"] = float(frame_mse(nxt, tgt).mean())
        if ebt:
            err = ((nxt - tgt) ** 2).mean(-1)
            entry["next_step"]["energy_error_spearman"] = energy_error_spearman(nxt_e, err)
        # rollout at the run's own thinking steps
        ro = _batched_rollout(model, observed, K, batch_size, steps=steps, generator=gen())
        rollouts[label] = ro["pred"]
        errs = horizon_errors(data.to_units(ro["pred"]), units_target, frame_shape=data.frame_shape,
                              units=None if video else data.units)
        entry["rollout"] = errs
        key, value = _headline(errs, video)
        curves[label] = errs[key]["per_step"]
        nfe_curves[label] = [(float(ro["nfe"]), value)]
        if ebt:
            per_vec = ((ro["pred"] - target) ** 2).mean(-1)                      # N×K, model units
            entry["rollout"]["energy_error_spearman"] = energy_error_spearman(ro["energy"], per_vec)
            entry["rollout"]["energy_per_step"] = [float(v) for v in ro["energy"].mean(0)]
            study = []
            for n in sorted(set(think_steps) | {steps}):
                # the run's own step count was rolled out above with the same generator seed: reuse it
                r = ro if n == steps else _batched_rollout(model, observed, K, batch_size, steps=n, generator=gen())
                e = errs if n == steps else horizon_errors(data.to_units(r["pred"]), units_target,
                                                            frame_shape=data.frame_shape)
                study.append({"policy": steps_text(n), "steps": n, "samples": 1, "nfe": r["nfe"],
                              "error": _headline(e, video)[1], "mse": e["mse"]["mean"]})
            for n in bon:
                r = _batched_rollout(model, observed, K, batch_size, steps=steps, samples=n, samples_sigma=bon_sigma,
                                     generator=gen())
                e = horizon_errors(data.to_units(r["pred"]), units_target, frame_shape=data.frame_shape)
                study.append({"policy": f"best-of-{n}", "steps": steps, "samples": n, "nfe": r["nfe"],
                              "error": _headline(e, video)[1], "mse": e["mse"]["mean"]})
            entry["thinking"] = study
            nfe_curves[f"{label}: thinking steps"] = [(s["nfe"], s["error"]) for s in study if s["samples"] == 1]
            nfe_curves[f"{label}: best-of-N (σ={bon_sigma:g})"] = [(s["nfe"], s["error"]) for s in study
                                                                  if s["samples"] > 1 or s["steps"] == steps]
            del nfe_curves[label]
        res["models"][label] = entry
        log(f"{label}: rollout {key} {value:.5g} (next-step MSE {entry['next_step']['mse']:.5g})")
    # the persistence forecast (repeat the last observed vector): what a model must beat to have learnt motion
    persist = observed[:, -1:].expand_as(target)
    errs = horizon_errors(data.to_units(persist), units_target, frame_shape=data.frame_shape,
                          units=None if video else data.units)
    nxt_p = windows[:, :-1]
    res["persistence"] = {"rollout": errs, "next_step": {
        "mse": float(((data.to_units(nxt_p) - data.to_units(windows[:, 1:])) ** 2).mean()),
        "mae": float((data.to_units(nxt_p) - data.to_units(windows[:, 1:])).abs().mean())}}
    curves["persistence (copy last)"] = errs[_headline(errs, video)[0]]["per_step"]
    # pictures: the first test window
    out_dir = Path(out_dir)
    ylabel = "MSE per frame (sum over pixels)" if video else "MSE (data units, mean over features)"
    plots = {}
    plot_error_vs_horizon(curves, out_dir / "error_vs_horizon.png", ylabel, title=f"{T0} observed → {K} predicted")
    plots["error_vs_horizon"] = "error_vs_horizon.png"
    plot_error_vs_nfe(nfe_curves, out_dir / "error_vs_nfe.png", ylabel, title="rollout error vs NFEs per vector")
    plots["error_vs_nfe"] = "error_vs_nfe.png"
    first = {label: p[0] for label, p in rollouts.items()}
    if video:
        plot_strip(target[0], first, data.frame_shape, out_dir / "rollout.png", observed=observed[0])
        write_gif(target[0], first, data.frame_shape, out_dir / "rollout.gif", observed=observed[0])
        plots.update(strip="rollout.png", gif="rollout.gif")
    else:
        plot_series(data.to_units(observed[0]), data.to_units(target[0]),
                    {k: data.to_units(v) for k, v in first.items()}, data.feature_names, data.units,
                    out_dir / "rollout.png")
        plots["series"] = "rollout.png"
    res["plots"] = plots
    return res


def format_sequence_report(res: dict) -> str:
    """The evaluation as a plain-text table."""
    video = res["video"]
    key = "frame_mse" if video else "mse"
    lines = [f"{res['windows']} test windows: {res['observed']} observed → {res['horizon']} predicted; errors in "
             f"{res['units']}"]
    head = f"{'model':<22}{'next MSE':>11}{'next MAE':>10}{'roll ' + key:>16}{'roll MAE':>10}"
    if video:
        head += f"{'SSIM':>8}"
    head += f"{'ρ(E, err)':>11}"
    lines.append(head)
    for label, m in res["models"].items():
        r = m["rollout"]
        row = (f"{label:<22}{m['next_step']['mse']:>11.5g}{m['next_step']['mae']:>10.4g}{r[key]['mean']:>16.5g}"
               f"{r['mae']['mean']:>10.4g}")
        if video:
            row += f"{r['ssim']['mean']:>8.4f}"
        rho = r.get("energy_error_spearman")
        row += f"{rho:>11.3f}" if rho is not None else f"{'-':>11}"
        lines.append(row)
    p = res.get("persistence")
    if p is not None:
        r = p["rollout"]
        row = (f"{'persistence (copy last)':<22}{p['next_step']['mse']:>11.5g}{p['next_step']['mae']:>10.4g}"
               f"{r[key]['mean']:>16.5g}{r['mae']['mean']:>10.4g}")
        if video:
            row += f"{r['ssim']['mean']:>8.4f}"
        lines.append(row + f"{'-':>11}")
    for label, m in res["models"].items():
        if "thinking" in m:
            lines.append(f"{label} thinking (rollout {key}): " + ", ".join(
                f"{s['policy']} {s['error']:.5g} ({s['nfe']} NFE)" for s in m["thinking"]))
        r = m["rollout"]
        lines.append(f"{label} {key} by horizon: " + " ".join(f"{v:.4g}" for v in r[key]["per_step"]))
    return "\n".join(lines)


__all__ = ["rollout", "next_step_predictions", "evaluate_sequence", "format_sequence_report"]
