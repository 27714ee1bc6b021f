"""``ebt generate RUN --prompt TEXT``: sample text from a trained text model."""
from __future__ import annotations

import torch

from .. import checkpoint as ckpt


def add_parser(sub):
    p = sub.add_parser("generate", help="generate text from a trained run")
    p.add_argument("run", help="run directory")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (with temperature > 0)")
    p.add_argument("--steps", type=int, default=None, help="EBT thinking steps per token (default: trained)")
    p.add_argument("--samples", type=int, default=1, help="EBT best-of-N candidates per token")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> int:
    from ..generate import generate
    model = ckpt.load(args.run)
    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    if args.max_new_tokens < 0:
        raise ValueError("--max-new-tokens must be >= 0")
    ids = model.tokenizer.encode(args.prompt)
    gen = torch.Generator().manual_seed(args.seed)
    policy = {}
    if hasattr(model, "energy_fn"):
        policy = {"steps": args.steps, "samples": args.samples}
    elif args.steps is not None or args.samples != 1:
        raise ValueError("--steps/--samples apply to EBT runs only")
    out = generate(model, torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, generator=gen, **policy)
    print(model.tokenizer.decode(out[0].tolist()))
    return 0
