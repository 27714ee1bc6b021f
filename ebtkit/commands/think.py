"""``ebt think RUN --text "..."``: show how an EBT thinks about a passage, token by token.

Prints the passage with every token coloured by its final energy (green = low = confident, red = high), the
highest-energy tokens, and the compute spent; saves a heatmap of the per-token energy at every thinking step
(the paper's Fig. 8). Every System 2 inference policy is available (``--steps``, ``--samples``, ``--tol``, ...);
:func:`add_policy_arguments` / :func:`policy_from_args` give other subcommands the same flags.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from ..core import checkpoint as ckpt
from ..core.thinking import is_energy_model
from ..eval.inference import SELECTIONS, Policy
from ..eval.thinking_study import passage_energies, plot_heatmaps, spearman, token_pieces
from ..tasks import load
from . import check_inference_memory, checks, run_config
from .output import check_file, staged_files

# ANSI 256-colour backgrounds from green (low energy) through yellow to red (high energy)
RAMP = (28, 34, 70, 106, 142, 178, 172, 166, 160, 124)


def add_policy_arguments(p, seed_default: int | None = 0,
                         seed_help: str = "seed of the initial candidates and noise (default 0)") -> None:
    """The System 2 inference flags shared by ``think`` and ``generate`` (numbers checked as parsed: see
    :mod:`ebtkit.commands.checks` for the bounds and why)."""
    g = p.add_argument_group("thinking policy")
    g.add_argument("--steps", type=checks.steps_int, default=None,
                   help=f"thinking steps per token, in [1, {checks.STEPS_MAX}] (default: as trained)")
    g.add_argument("--alpha", type=checks.step_size, default=None,
                   help=f"step size α override (absolute), in (0, {checks.ALPHA_MAX:g}]")
    g.add_argument("--alpha-mult", type=checks.step_mult, default=None,
                   help=f"step size as a multiple of the trained α, in (0, {checks.ALPHA_MULT_MAX:g}]")
    g.add_argument("--samples", type=checks.samples_int, default=1, help=f"best-of-N: candidates per token, in [1, "
                   f"{checks.SAMPLES_MAX}] (default 1)")
    g.add_argument("--select", default="min", choices=SELECTIONS,
                   help="best-of-N selection per token: lowest final energy (min) or largest energy drop")
    g.add_argument("--accept-lower", action="store_true", help="keep a step only where it lowers the energy")
    g.add_argument("--tol", type=checks.nonneg_float, default=None,
                   help="adaptive compute: a token stops thinking once its energy changes by less than this (>= 0)")
    g.add_argument("--sigma", type=checks.sigma, default=0.0,
                   help=f"Langevin noise σ on the logits at inference (in [0, {checks.SIGMA_MAX:g}]; 0 = none)")
    g.add_argument("--seed", type=checks.seed_int, default=seed_default, help=seed_help)


def policy_from_args(args) -> Policy:
    if args.alpha is not None and args.alpha_mult is not None:
        raise ValueError("give --alpha or --alpha-mult, not both")
    return Policy(steps=args.steps, alpha=args.alpha, alpha_mult=args.alpha_mult, samples=args.samples,
                  select=args.select, accept_lower=args.accept_lower, tol=args.tol, langevin_sigma=args.sigma)


def add_parser(sub):
    p = sub.add_parser("think", help="show per-token energies of a passage (uncertainty) and save a heatmap",
                       description="Think about every next token of a passage with a trained EBT; print the "
                       "passage coloured by per-token final energy and save an energy heatmap (step × token).")
    p.add_argument("run", help="EBT run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the passage")
    src.add_argument("--file", help="read the passage from a UTF-8 text file")
    add_policy_arguments(p)
    p.add_argument("--out", default=None, help="heatmap image path: a .png/.pdf/.svg file (other names get .png "
                   "appended), or an existing folder (default RUN/think_heatmap.png); the path written is printed")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the per-token energies as JSON")
    p.add_argument("--color", default="auto", choices=["auto", "always", "never"], help="ANSI colours (default auto)")
    return p


def heatmap_path(out: str | None, run) -> Path:
    """Where the heatmap goes, exactly: an image file name as given, ``.png`` appended to any other name, and
    ``think_heatmap.png`` inside a given folder (default: the run directory)."""
    if out is None:
        return ckpt.run_dir_of(run) / "think_heatmap.png"
    p = Path(out)
    if p.is_dir():
        return p / "think_heatmap.png"
    return p if p.suffix.lower() in (".png", ".pdf", ".svg", ".jpg", ".jpeg") else p.with_name(p.name + ".png")


def colourise(pieces: list[str], energies: list[float | None], enable: bool) -> str:
    """Pieces with a background colour by within-passage energy rank (``None`` = no energy: uncoloured)."""
    vals = sorted(e for e in energies if e is not None)
    out = []
    for piece, e in zip(pieces, energies):
        shown = piece.replace("↵", "↵\n")
        if e is None or not enable or len(vals) < 2:
            out.append(shown)
            continue
        rank = sum(v < e for v in vals) / (len(vals) - 1)             # 0 (lowest) .. 1 (highest)
        colour = RAMP[min(len(RAMP) - 1, int(rank * len(RAMP)))]
        out.append(f"\033[48;5;{colour}m\033[38;5;16m{shown}\033[0m")
    return "".join(out)


def run(args) -> int:
    policy = policy_from_args(args)
    meta = ckpt.read_config(args.run)
    if meta["task"] != "text":
        raise ValueError(f"ebt think needs a text EBT run; {args.run} is a {meta['task']!r} run")
    cfg = run_config(meta)
    if cfg.model.model == "ebt":           # one passage, every position of the context thought about at once
        check_inference_memory(cfg, args.device, "thinking about this passage", "lower --steps or --samples",
                               rows=1, steps=policy.steps or cfg.thinking.default_eval_steps, samples=policy.samples)
    # where the outputs go is checked before anything is computed; they are written together at the end
    out = check_file(heatmap_path(args.out, args.run), "--out")
    targets = [out]
    if args.json is not None:
        targets.append(check_file(args.json, "--json"))
        if os.path.realpath(targets[1]) == os.path.realpath(out):
            raise ValueError(f"--json {args.json} is the heatmap's path; give another file")
    if args.text is not None:
        text = args.text
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {args.file}: {e}") from None
    b = load(args.run)
    model, tok, trained = b.model, b.tokenizer, b.eval_steps
    if not is_energy_model(model):
        raise ValueError(f"{args.run} is a {b.config.model.model} run; only EBTs have energies to show")
    ids = tok.encode(text)
    if len(ids) < 2:
        raise ValueError("the passage needs at least 2 tokens")
    ctx = b.config.model.context
    note = ""
    if len(ids) > ctx + 1:
        note = f" (truncated to the model's context: first {ctx + 1} of {len(ids)} tokens)"
        ids = ids[: ctx + 1]
    ids_t = torch.tensor(ids)
    kwargs = {**policy.kwargs(), "steps": policy.steps if policy.steps is not None else trained}
    with torch.no_grad():
        pe = passage_energies(model, ids_t, seed=args.seed, **kwargs)
    pieces = token_pieces(tok, ids)
    final = [None] + [float(e) for e in pe["final"]]
    enable = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    print(colourise(pieces, final, enable))
    print()
    print(f"policy: {policy.label(trained)}; {len(ids) - 1} tokens{note}; "
          f"{float(pe['nfe'].double().mean()):.2f} NFEs per token")
    if enable:
        print("colour: energy rank within the passage, " + "".join(f"\033[48;5;{c}m  \033[0m" for c in RAMP)
              + " low → high")
    order = sorted(range(1, len(ids)), key=lambda i: -final[i])
    show = lambda i: repr(pieces[i])[1:-1] if pieces[i].strip() else "␣"  # noqa: E731
    print("highest energy: " + ", ".join(f"{show(i)} {final[i]:.4g}" for i in order[:8]))
    print("lowest energy:  " + ", ".join(f"{show(i)} {final[i]:.4g}" for i in order[::-1][:8]))
    rho = float(spearman(pe["final"], pe["nll"]))
    print(f"Spearman(final energy, token CE) in this passage: {rho:+.3f}")
    with staged_files(*targets) as tmps:
        plot_heatmaps([(f"per-token energy while thinking ({policy.label(trained)})", pieces[1:],
                        pe["trajectory"])], tmps[0])
        if args.json is not None:
            rec = {"tokens": ids, "pieces": pieces, "final_energy": final, "nll": [None] + pe["nll"].tolist(),
                   "trajectory": pe["trajectory"].tolist(), "nfe": pe["nfe"].tolist(), "policy": policy.kwargs()}
            tmps[1].write_text(json.dumps(rec), encoding="utf-8")
    print(f"heatmap: {out}")
    if args.json is not None:
        print(f"json: {args.json}")
    return 0
