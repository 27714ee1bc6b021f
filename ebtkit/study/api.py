"""Every place :mod:`ebtkit.study` touches the rest of ebtkit, in one file.

The sweep runs each point as a subprocess of the ``ebt`` CLI and reads run directories through their files
only (``metrics.jsonl``, ``eval.json``, ``thinking.json``, ``checkpoint/config.json``). What needs the library
itself — resolving a config before anything runs, counting non-embedding parameters, and thinking over a
passage for the report — goes through the public API here, so a reshaped API is fixed in one place.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def resolve_config(preset: str, model: str, overrides: dict, system: str | None = None) -> dict:
    """The resolved run config (as a JSON dict) that ``ebt train --preset P --model M --set k=v ...`` trains.

    Raises ``ValueError`` on an unknown preset, model or key, before anything is written."""
    import ebtkit
    cfg = ebtkit.preset(preset, system=system, **{"model.model": model, **overrides})
    return cfg.to_dict()


def _run_config(config: dict):
    """The ``RunConfig`` of a resolved config, its vocabulary widened to the BPE's when it trains one (the shape
    ``ebt train`` checks before reading data)."""
    import ebtkit
    cfg = ebtkit.RunConfig.from_dict(config)
    if cfg.data.tokenizer == "bpe":
        cfg = cfg.replace(**{"model.vocab_size": max(cfg.model.vocab_size, cfg.data.bpe_vocab)})
    return cfg


def non_embedding_params(config: dict) -> int:
    """Non-embedding parameters (the shared block stack) of the model a resolved config builds: arithmetic on the
    config (:func:`ebtkit.core.estimate.param_counts`, checked against built models by its tests), so a sweep
    plans any size without allocating it."""
    from ebtkit.core.estimate import param_counts
    return int(param_counts(_run_config(config).model)[1])


def training_memory(config: dict, device: str = "auto") -> int:
    """Estimated training memory (bytes, one process) of a resolved config on ``device``; raises the one-line
    ``DoesNotFitError`` (a ``ValueError``) that ``ebt train`` gives when it exceeds what the device has free
    (:func:`ebtkit.core.estimate.check_fits`; ``EBT_CHECK_MEMORY=0`` skips the refusal). Allocates nothing."""
    from ebtkit.core.estimate import check_fits
    return int(check_fits(_run_config(config), "text", device, processes=1).total_bytes)


def free_memory(device: str = "auto") -> tuple[int | None, str]:
    """``(bytes, what)`` the device has free now (``None`` where the platform does not say, or when
    ``EBT_CHECK_MEMORY=0``: nothing is then checked)."""
    from ebtkit.core.estimate import available_memory, check_enabled
    if not check_enabled():
        return None, "unchecked"
    return available_memory(device)


def human_bytes(n: float) -> str:
    from ebtkit.core.estimate import human_bytes as h
    return h(n)


def config_hash(config: dict) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def run_config(run: str | Path) -> dict | None:
    """``{"task": ..., "config": {...}}`` from a run's ``checkpoint/config.json`` (None if absent)."""
    run = Path(run)
    for p in (run / "checkpoint" / "config.json", run / "config.json"):
        if p.exists():
            return json.loads(p.read_text())
    return None


def energy_passage(run: str | Path, text: str, *, steps: int | None = None, seed: int = 0,
                   max_tokens: int = 256) -> dict:
    """Per-token final energy and cross-entropy of a text EBT thinking over ``text``.

    Loads the run with ``ebtkit.load`` and thinks with ``ebtkit.think_text`` (the run's trained
    steps unless ``steps``). A passage longer than the model's context is cut into consecutive windows of
    ``context + 1`` tokens sharing one token (each window sees only its own context). Returns
    ``{"pieces": [str], "energy": [float|None], "ce": [float|None], "steps": int, "context": int}``; the first
    token has no prediction (None).
    """
    import torch
    import torch.nn.functional as F

    import ebtkit
    think_text = ebtkit.think_text

    meta = run_config(run) or {}
    cfg = meta.get("config", {})
    if meta.get("task", "text") != "text" or cfg.get("model", {}).get("model") != "ebt":
        raise ValueError(f"{run} is not a text EBT run: it has no energies")
    loaded = ebtkit.load(str(run))
    model = getattr(loaded, "model", loaded)              # a Bundle (model + tokenizer) or the model itself
    tokenizer = getattr(loaded, "tokenizer", None) or getattr(model, "tokenizer")
    model.eval()
    if steps is None:                                      # the trained evaluation steps
        th = cfg.get("thinking", {})
        steps = int(getattr(model, "eval_steps", 0) or th.get("eval_steps") or th.get("max_steps") or th.get("steps") or 2)
    ids = tokenizer.encode(text)[: max_tokens + 1]
    if len(ids) < 2:
        raise ValueError("the passage needs at least 2 tokens")
    ctx = int(cfg["model"]["context"])
    energy: list = [None]
    ce: list = [None]
    gen = torch.Generator().manual_seed(seed)
    start = 0
    while start < len(ids) - 1:
        chunk = torch.tensor(ids[start: start + ctx + 1])
        out = think_text(model, chunk[None, :-1], steps=steps, generator=gen)
        with torch.no_grad():
            nll = F.cross_entropy(out.candidates[0].detach().float(), chunk[1:], reduction="none")
        energy += [float(e) for e in out.final_energy[0].detach()]
        ce += [float(v) for v in nll]
        start += ctx
    pieces = [tokenizer.decode([int(i)]) for i in ids]
    return {"pieces": pieces, "energy": energy, "ce": ce, "steps": steps, "context": ctx}


def text_sample(run: str | Path, prompt: str, *, max_new_tokens: int = 120, seed: int = 0,
                timeout: float = 300) -> str:
    """A greedy continuation of ``prompt`` by a text run, from ``ebt generate`` in a subprocess (the CLI is the
    contract; ``OMP_NUM_THREADS=1``). Returns the continuation only; raises ``RuntimeError`` on failure."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ebtkit.cli", "generate", str(run), "--prompt", prompt,
           "--max-new-tokens", str(max_new_tokens), "--seed", str(seed)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError((res.stderr.strip().splitlines() or ["ebt generate failed"])[-1])
    out = res.stdout.rstrip("\n")
    return out[len(prompt):] if out.startswith(prompt) else out


def versions() -> dict:
    import ebtkit
    return {"ebtkit": getattr(ebtkit, "__version__", "?")}
