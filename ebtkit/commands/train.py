"""``ebt train``: train a model of any task (default: the main job — the text EBT on the built-in corpus).

A run's config is resolved in one order: the task's size preset (``--preset``) ← its thinking recipe
(``--system``) ← a config file (``--config FILE``, TOML or JSON) ← flags ← ``--set KEY=VALUE``. Values are
type-checked against the config's fields and keys a run derives itself are refused, each with a one-line error
naming the key. ``--resume RUN`` continues a run with its saved config; the same flags may be repeated but not
changed, except ``--steps`` (which keeps the schedule already run) and the logging cadence.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:      # Python 3.10
    import tomli as tomllib

from ..core import checkpoint as ckpt
from ..core import dist
from ..core.config import TRAIN_DERIVED, Config, ConfigError, check_value, flatten, parse_value
from ..core.estimate import check_fits
from ..data.relocate import relocated
from ..core.device import DEVICE_HELP, PRECISIONS
from ..tasks import TASKS, Task, get_task
from ..tasks.hub import record_command
from ..training import fit
from . import checks
from .eval import evaluate_text_run
from .presets import expected_shapes
from .launch import launch
from .output import check_new_dir

# flags that only some tasks take (argparse dest → the tasks' own flag tables decide)
TASK_FLAGS = ("model", "steps", "batch_size", "lr", "alpha", "context", "seed", "tokenizer", "data", "dataset",
              "loss", "think_steps", "train_sigma", "problem")


def add_parser(sub):
    p = sub.add_parser("train", help="train a model", description="Train a model. With no options: the text EBT "
                       "('cpu' preset, System 1) on the built-in King James Bible corpus, then evaluate it.")
    p.add_argument("--task", default=None, choices=list(TASKS), help="text (default), image denoising, or "
                   "continuous sequences (video frames, time series, your (N, T, F) arrays)")
    p.add_argument("--model", default=None, help="text, sequence: ebt | transformer++ (default ebt); denoise: ebt | dit; reason: ebt | feedforward | looped")
    p.add_argument("--preset", default=None, help="size/hyperparameter preset (see 'ebt presets'; default cpu)")
    p.add_argument("--system", default=None, help="thinking recipe for the EBT: s1 | s2 (default: the preset's own; "
                   "s1 for size presets)")
    p.add_argument("--config", default=None, metavar="FILE", help="a TOML or JSON file holding a whole run (keys "
                   "task, preset, system and config sections such as [model], [train]), or a run's "
                   "checkpoint/config.json; flags and --set override it")
    p.add_argument("--data", default=None, help="text: a UTF-8 text file (default: built-in corpus), or a directory "
                   "written by 'ebt prepare' (memory-mapped token shards; its tokenizer and split); "
                   "denoise: an IDX file, a folder of IDX files or a folder of images; "
                   "sequence: a .npy/.npz array of shape (N, T, F)")
    p.add_argument("--steps", type=checks.positive_int, default=None, help="optimizer steps (with --resume: extend the run to N; "
                   "the LR schedule already run is kept and steps past it run at the floor LR)")
    p.add_argument("--batch-size", type=checks.positive_int, default=None)
    p.add_argument("--lr", type=checks.positive_float, default=None, help="peak learning rate (> 0, finite)")
    p.add_argument("--alpha", type=checks.step_size, default=None, help="EBT thinking step size α, in "
                   f"(0, {checks.ALPHA_MAX:g}]")
    p.add_argument("--context", type=checks.positive_int, default=None, help="text, sequence: context length S (windows of S + 1)")
    p.add_argument("--tokenizer", default=None, choices=["byte", "bpe"], help="text: byte (default) or a BPE trained here")
    p.add_argument("--seed", type=checks.seed_int, default=None)
    p.add_argument("--out", default=None, help="run directory (default runs/<model>-<preset>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the run in RUN with its saved config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted config override, e.g. --set thinking.steps=3 (repeatable; typed by the field)")
    p.add_argument("--device", default="auto", help=f"where to train: {DEVICE_HELP}; under torchrun each rank "
                   "binds cuda:LOCAL_RANK")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS), help="autocast precision (train.precision; "
                   "default auto: bf16 on CUDA devices that support it, fp32 elsewhere); weights stay fp32")
    p.add_argument("--keep-best", action="store_true", default=None, help="also keep RUN/best/, the checkpoint with "
                   "the best validation metric so far (train.keep_best)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--nproc-per-node", type=checks.positive_int, default=None, metavar="N",
                   help="train in N processes on this machine (torch.distributed's launcher; the run is checked "
                        "before any starts; each draws its own batches of --batch-size, so the global batch is N × "
                        "batch size; with --device cuda each binds cuda:LOCAL_RANK)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training (text)")
    g = p.add_argument_group("image denoising (--task denoise) and sequences (--task sequence)")
    g.add_argument("--dataset", default=None, choices=["auto", "fashion-mnist", "mini"],
                   help="built-in images when --data is not given: Fashion-MNIST (Debian package "
                        "dataset-fashion-mnist), the bundled 640-image 'mini' set, or auto (default: the first available)")
    g.add_argument("--loss", default=None, choices=["mse", "smooth_l1"],
                   help="denoise: EBT per-step reconstruction loss (default mse); sequence: the regression loss of "
                        "both models (default smooth_l1)")
    g.add_argument("--think-steps", type=checks.steps_int, default=None, help="EBT thinking steps per training batch")
    g.add_argument("--problem", default=None, help="reason: addition | inverse | connectivity | parity | sudoku "
                   "(default addition; docs/reasoning.md)")
    g.add_argument("--train-sigma", type=checks.positive_float, default=None,
                   help="training noise level as a fraction of the diffusion schedule (default 0.1)")
    return p


def read_config_file(path: str) -> dict[str, Any]:
    """A run file: ``{"task", "preset", "system", "overrides": {dotted: value}, "resolved": Config | None}``.

    A run's own ``checkpoint/config.json`` (``{"task", "config"}``) is taken whole (``resolved``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {p}: config file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--config {p}: not a text file (expected TOML or JSON in UTF-8)") from None
    except OSError as e:
        raise ValueError(f"--config {p}: cannot read ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a table of config sections")
    if isinstance(data.get("config"), dict) and "task" in data:
        task = get_task(data["task"])
        try:
            return {"task": data["task"], "preset": None, "system": None, "overrides": {},
                    "resolved": task.config_from_dict(data["config"])}
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from None
    body = dict(data)
    return {"task": body.pop("task", None), "preset": body.pop("preset", None), "system": body.pop("system", None),
            "overrides": flatten(body), "resolved": None}


def flag_overrides(task: type[Task], args) -> dict[str, Any]:
    """Dotted overrides from the flags this task takes and from ``--set`` (strings: typed later)."""
    over: dict[str, Any] = {}
    for dest in TASK_FLAGS:
        val = getattr(args, dest, None)
        if val is None:
            continue
        if dest not in task.flags:
            raise ValueError(f"--{dest.replace('_', '-')} does not apply to --task {task.name}")
        over[task.flags[dest]] = val
    if getattr(args, "precision", None) is not None:
        over["train.precision"] = args.precision
    if getattr(args, "keep_best", None):
        over["train.keep_best"] = True
    for item in args.set:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        check_setting(task, key.strip(), val, f"--set {item}")
        over[key.strip()] = val
    return over


def check_setting(task: type[Task], key: str, text: str, where: str) -> None:
    """One ``KEY=VALUE`` override on its own: a known key that a run does not derive, and a value of the field's
    type; else a one-line error starting with ``where`` (the flag and what was typed)."""
    cls = task.config_class
    try:
        tp = cls.field_type(key)
        derived = {**TRAIN_DERIVED, **cls.DERIVED}
        if key in derived:
            raise ConfigError(f"{key} cannot be set: {derived[key]}")
        check_value(key, parse_value(key, text, tp), tp)
    except ConfigError as e:
        raise ValueError(f"{where}: {e}") from None


def resolve(args) -> tuple[type[Task], Config]:
    """The task and the resolved config of a fresh run from parsed arguments (ValueError on bad input)."""
    file = read_config_file(args.config) if args.config else None
    name = args.task or (file or {}).get("task") or "text"
    if file and file["task"] and args.task and file["task"] != args.task:
        raise ValueError(f"{args.config} is a {file['task']!r} run config, not {args.task!r}")
    task = get_task(name)
    over = flag_overrides(task, args)
    model = over.get("model.model") or (file or {}).get("overrides", {}).get("model.model")
    if model is not None and model not in task.models:
        raise ValueError(f"unknown model {model!r} for --task {task.name}; choose from {', '.join(task.models)}")
    if model is not None and model != "ebt":
        given = [n for n in task.ebt_only if getattr(args, n, None) is not None]
        if given:
            raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in given)} apply to --model ebt only")
    if file and file["resolved"] is not None:
        return task, file["resolved"].override(over) if over else file["resolved"]
    system = args.system or (file or {}).get("system")
    preset = args.preset or (file or {}).get("preset") or "cpu"
    return task, task.preset(preset, system, **{**(file or {}).get("overrides", {}), **over})


def default_run_dir(task: type[Task], cfg: Config) -> Path:
    """The one run-directory rule: ``runs/[<task>-]<model>-<preset>-<time>-<pid>`` (the text task has no prefix).
    The process id makes two runs started in the same second (a script, a sweep by hand) different runs rather
    than one directory both try to claim."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = "" if task.name == "text" else f"{task.name}-"
    return Path(f"runs/{prefix}{cfg.model.model.replace('+', 'p')}-{cfg.preset}-{stamp}-{os.getpid()}")


def run(args) -> int:
    progress = not args.no_progress
    if args.resume:
        if args.out:
            raise ValueError("give --resume RUN or --out DIR, not both")
        meta = ckpt.read_config(args.resume)
        if args.task and args.task != meta["task"]:
            raise ValueError(f"{args.resume} is a {meta['task']!r} run, not {args.task!r}")
        task = get_task(meta["task"])
        changes = flag_overrides(task, args)
        if args.config:
            file = read_config_file(args.config)
            changes = {**(flatten(file["resolved"].to_dict()) if file["resolved"] else file["overrides"]), **changes}
        if args.preset is not None:
            changes["preset"] = args.preset
        if args.system is not None:
            changes["thinking.system"] = args.system
        if isinstance(changes.get("data.path"), str) and args.data is not None:
            # the same data, typed relative to here or at its new place (checked against the recorded fingerprint;
            # the next checkpoint records where it is now): not a change of config
            changes["data.path"] = relocated(meta, args.data, args.resume)["path"]
        out = Path(args.resume)
        if getattr(args, "nproc_per_node", None) is not None:      # N ranks run this command (rank 0 reports)
            return launch(args, task, None, out, resume=True, changes=changes)
        res = fit(task, None, out, resume=True, changes=changes, progress=progress, device=args.device)
    else:
        task, cfg = resolve(args)
        # sizes before anything is built or loaded: a run that cannot fit the device is refused in one line
        check_fits(expected_shapes(task.name, cfg), task.name, getattr(args, "device", "auto"),
                   processes=getattr(args, "nproc_per_node", None))
        out = Path(args.out) if args.out else default_run_dir(task, cfg)
        check_new_dir(out, "--out" if args.out else None)      # where the run goes, before any data is read
        if getattr(args, "nproc_per_node", None) is not None:
            return launch(args, task, cfg, out)
        res = fit(task, cfg, out, progress=progress, device=args.device)
    if not dist.is_main():                 # under torchrun, rank 0 reports and evaluates
        return 0
    record_command(out, getattr(args, "argv", None) or ["train"])   # the model card's training command
    print(f"checkpoint: {res['checkpoint']}")
    print(f"metrics:    {res['metrics']}")
    if task.name == "text" and not args.no_eval:
        evaluate_text_run(out)
    return 0
