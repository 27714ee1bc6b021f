"""``ebt generate RUN --prompt TEXT``: sample text from a trained text model."""
from __future__ import annotations

import torch

from .. import checkpoint as ckpt
from .think import add_policy_arguments, policy_from_args


def add_parser(sub):
    p = sub.add_parser("generate", help="generate text from a trained run")
    p.add_argument("run", help="run directory")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (with temperature > 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole window for every token (reference)")
    add_policy_arguments(p)   # EBT only: --steps --alpha --alpha-mult --samples --select --accept-lower --tol --sigma
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
    policy = policy_from_args(args)
    if hasattr(model, "energy_fn"):
        kwargs = policy.kwargs()
    elif policy != type(policy)():
        raise ValueError("thinking-policy options (--steps, --samples, ...) apply to EBT runs only")
    else:
        kwargs = {}
    out = generate(model, torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, generator=gen, cached=not args.no_cache, **kwargs)
    print(model.tokenizer.decode(out[0].tolist()))
    return 0
