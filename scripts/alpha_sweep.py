"""Step-size (α) sweep for the text EBT on the built-in corpus (LOG.md, "α for V=256").

Usage: python scripts/alpha_sweep.py --alphas 2,10,40,160,500 --steps 150
Prints, per α: CE at step 0 (random logits), first-batch loss, final train loss, final α, energy gap, val ppl.
"""
import argparse
import json

import torch

torch.set_num_threads(1)

from ebtkit.core.config import preset
from ebtkit.core.models import build_model
from ebtkit.data.text import get_batch, prepare_text_data
from ebtkit.eval.metrics import perplexity
from ebtkit.tasks.text import ebt_text_loss
from ebtkit.training import lr_factor, param_groups, step_generator

ap = argparse.ArgumentParser()
ap.add_argument("--alphas", default="2,10,40,160,500")
ap.add_argument("--steps", type=int, default=150)
ap.add_argument("--preset", default="tiny")
ap.add_argument("--set", action="append", default=[])
args = ap.parse_args()
over = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
base = preset(args.preset, **{"train.steps": args.steps, "train.warmup": max(1, args.steps // 10), **over})
data = prepare_text_data(base.data, base.model.context)
for a in [float(x) for x in args.alphas.split(",")]:
    cfg = base.replace(**{"model.alpha": a})
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = torch.optim.AdamW(param_groups(model, cfg.train), lr=cfg.train.lr)
    first, hist = None, []
    for step in range(cfg.train.steps):
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, cfg.train)
        gen = step_generator(0, step)
        b = get_batch(data.train, cfg.train.batch_size, cfg.model.context + 1, gen)
        loss, m, _ = ebt_text_loss(model, b, cfg.thinking, gen)
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if first is None:
            first = {k: round(float(v), 3) for k, v in m.items()}
        hist.append((float(loss), float(gn)))
    last = hist[-10:]
    ppl = perplexity(model, data.val, cfg.model.context, max_windows=32)["ppl"]
    print(json.dumps({"alpha0": a, "ce_step0": first["ce_step0"], "first_loss": first["loss"],
                      "final_loss": round(sum(x for x, _ in last) / len(last), 3),
                      "max_grad_norm": round(max(g for _, g in hist), 2), "alpha_final": round(float(m["alpha"]), 2),
                      "energy_gap": round(float(m["energy_gap"]), 4), "val_ppl": round(ppl, 2)}), flush=True)
