"""FLOPs of one training step, counted by PyTorch's ``FlopCounterMode`` around the library's training loop.

Method (measured, not analytic): run :func:`ebtkit.training.fit` (the loop ``ebt train`` runs; this module does
not import the CLI) in this process for ``1`` and for ``1 + k`` steps with the same config (no periodic
evaluation or saving in between; both end with the same final validation) under
:class:`torch.utils.flop_counter.FlopCounterMode`, and take ``(F(1 + k) − F(1)) / k``. Whatever the training
step does — the EBT's thinking steps with their second-order backward, the Transformer++'s one forward and
backward — is counted as the real code runs it, and the final validation cancels. The counter counts
matmul-class ops (matmul, bmm, addmm, convolutions, scaled-dot-product attention incl. the CPU flash kernel
mapped below), i.e. the FLOPs scaling studies quote; element-wise ops and the optimizer are not counted. For a
recipe with a random number of thinking steps per batch (System 2) it is the mean over the ``k`` sampled steps.

Run as ``python -m ebtkit.study.flops --preset P --model M [--system S] [--set k=v ...]``: prints JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile

# keys that must not change between the two counted runs: no periodic evaluation/saving inside the window
_QUIET = {"train.eval_every": 1_000_000, "train.save_every": 1_000_000, "train.log_every": 1_000_000,
          "train.eval_batches": 1}


def _sdpa_mapping():
    import torch
    from torch.utils import flop_counter as fc

    def fwd(q, k, v, *args, out_shape=None, **kw):
        return fc.sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, out_shape=None, **kw):
        return fc.sdpa_backward_flop_count(grad_out, q, k, v)
    ops = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            ops[op] = fn
    return ops


def _count(task, cfg, out: str) -> int:
    """FLOPs of one whole ``fit`` of ``cfg`` into the new run directory ``out`` (its output silenced)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ebtkit.training import fit
    with FlopCounterMode(display=False, custom_mapping=_sdpa_mapping()) as counter:
        with contextlib.redirect_stdout(io.StringIO()):
            fit(task, cfg, out, progress=False, log=lambda *a, **k: None)
    return int(counter.get_total_flops())


def train_step_flops(preset: str, model: str, overrides: dict | None = None, system: str | None = None,
                     k: int = 2) -> dict:
    """``{"flops_per_step": F, "method": ...}`` for one optimizer step of ``ebt train`` with this config: the
    text task's training loop (:func:`ebtkit.training.fit`, what ``ebt train --no-eval`` runs) at seed 0."""
    import torch

    from ebtkit.tasks import get_task
    torch.set_num_threads(1)
    sets = {**(overrides or {}), **_QUIET}
    sets.pop("train.steps", None)
    task = get_task("text")
    counts = {}
    for steps in (1, 1 + k):
        cfg = task.preset(preset, system, **{**sets, "model.model": model, "train.seed": 0, "train.steps": steps})
        with tempfile.TemporaryDirectory(prefix="ebt-flops-") as tmp:
            counts[steps] = _count(task, cfg, f"{tmp}/run")
    per_step = (counts[1 + k] - counts[1]) / k
    return {"flops_per_step": per_step, "method": f"FlopCounterMode, (F({1 + k} steps) - F(1 step)) / {k}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ebtkit.study.flops", description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--system", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("-k", type=int, default=2, help="extra steps counted (default 2)")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, val = item.partition("=")
        try:
            overrides[key] = json.loads(val)
        except json.JSONDecodeError:
            overrides[key] = val
    res = train_step_flops(args.preset, args.model, overrides, args.system, args.k)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
