"""``ebt presets [--task TASK]``: every task's named presets and thinking recipes, and what each size costs.

For each size preset and model the table gives the parameter count (total and non-embedding: the shared block
stack) and the estimated training memory — fp32 weights, gradients and AdamW state plus the activations of the
unrolled thinking — per sequence and at the preset's batch (:mod:`ebtkit.core.estimate`: exact counts, memory
calibrated on CPU in fp32). Shapes that the data decides are filled in from the data config without loading any
data (:func:`expected_shapes`).
"""
from __future__ import annotations

from ..core.config import Config
from ..core.estimate import estimate, human_bytes
from ..data.sequences import SEATTLE_FEATURES
from ..tasks import TASKS


def add_parser(sub):
    p = sub.add_parser("presets", help="list presets, thinking recipes and model sizes of every task",
                       description="List each task's presets and thinking recipes, with every size preset's "
                                   "parameter count and estimated training memory (per sequence and per batch).")
    p.add_argument("--task", default=None, choices=list(TASKS), help="only this task (default: every task)")
    return p


def expected_shapes(task_name: str, cfg: Config) -> Config:
    """``cfg`` with the shapes its data will decide filled in where the data config says them (no data is read):
    the text vocabulary (256 bytes, or ``data.bpe_vocab`` for a BPE — an upper bound) and the sequence features
    (``canvas²`` pixels for Moving Fashion-MNIST, the weather's variables). Users' files keep the config's value
    until the run's ``setup`` reads them."""
    if task_name == "text" and cfg.data.tokenizer == "bpe":
        return cfg.replace(**{"model.vocab_size": max(cfg.model.vocab_size, cfg.data.bpe_vocab)})
    if task_name == "sequence" and getattr(cfg.data, "path", None) is None:
        features = {"moving-fmnist": cfg.data.canvas ** 2, "seattle-weather": len(SEATTLE_FEATURES)}
        if cfg.data.source in features:
            return cfg.replace(**{"model.features": features[cfg.data.source]})
    return cfg


def size_lines(task) -> list[str]:
    """One line per (size preset, model): parameters and estimated training memory."""
    lines = [f"  {'preset':<8} {'model':<14} {'parameters':>11} {'non-embedding':>14} {'per sequence':>13} "
             f"{'training at the batch':>24}"]
    for p in task.presets:
        for model in task.models:
            cfg = expected_shapes(task.name, task.preset(p, None, **{"model.model": model}))
            e = estimate(cfg)
            lines.append(f"  {p:<8} {model:<14} {_count(e.params):>11} {_count(e.non_embedding_params):>14} "
                         f"{human_bytes(e.activation_bytes_per_sequence):>13} "
                         f"{human_bytes(e.total_bytes) + f' (batch {e.rows})':>24}")
    return lines


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def run(args) -> int:
    names = [args.task] if getattr(args, "task", None) else list(TASKS)
    for name in names:
        task = TASKS[name]
        print(f"presets (--task {name}):")
        for p, over in task.presets.items():
            print(f"  {p:<8} " + " ".join(f"{k}={v}" for k, v in over.items()) + f" recipe={task.default_system(p)}")
        print(f"thinking recipes (--task {name} --system):")
        for r, over in task.recipes.items():
            print(f"  {r:<8} " + " ".join(f"{k}={v}" for k, v in over.items()))
        for line in task.preset_variants():
            print(line)
        print(f"sizes (--task {name}; estimated training memory, fp32: 'per sequence' = the activations one more "
              f"sequence adds, 'training at the batch' = weights, gradients and AdamW state + the batch's activations):")
        for line in size_lines(task):
            print(line)
    return 0
