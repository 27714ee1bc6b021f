"""``ebt generate RUN --prompt TEXT``: sample text from a trained text model, streamed as it is produced.

Tokens are printed as soon as they are chosen, decoded incrementally (an incomplete UTF-8 sequence is held
back until it completes, invalid bytes become U+FFFD: the output is always valid UTF-8). Sampling uses a
random seed unless ``--seed`` is given; the seed used is printed (on stderr) so a sample can be repeated.
Memory stays bounded whatever ``--max-new-tokens``: only the model's window is kept.
"""
from __future__ import annotations

import secrets
import sys

import torch

from ..core.thinking import is_energy_model
from ..data.tokenizers import StreamDecoder
from ..eval.generate import generate
from ..tasks import load
from .think import add_policy_arguments, policy_from_args


def add_parser(sub):
    p = sub.add_parser("generate", help="generate text from a trained run (streamed)")
    p.add_argument("run", help="run directory")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (with temperature > 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole window for every token (reference)")
    add_policy_arguments(p, seed_default=None, seed_help="sampling seed (default: a random one, printed)")
    return p


def run(args) -> int:
    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    if args.max_new_tokens < 0:
        raise ValueError("--max-new-tokens must be >= 0")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    b = load(args.run)
    if b.task != "text":
        raise ValueError(f"ebt generate needs a text run; {args.run} is a {b.task!r} run")
    model, tok = b.model, b.tokenizer
    ids = tok.encode(args.prompt)
    policy = policy_from_args(args)
    if is_energy_model(model):
        kwargs = {**policy.kwargs(), "steps": policy.steps if policy.steps is not None else b.eval_steps}
    elif policy != type(policy)():
        raise ValueError("thinking-policy options (--steps, --samples, ...) apply to EBT runs only")
    else:
        kwargs = {}
    seed = args.seed if args.seed is not None else secrets.randbits(31)
    gen = torch.Generator().manual_seed(seed)
    print(f"seed: {seed}", file=sys.stderr, flush=True)
    decoder = StreamDecoder(tok)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()

    def emit(nxt: torch.Tensor) -> None:
        out.write(decoder.feed(int(nxt[0])))
        out.flush()

    generate(model, torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
             generator=gen, cached=not args.no_cache, on_token=emit, keep=False, **kwargs)
    out.write(decoder.flush() + "\n")
    out.flush()
    return 0
