"""``ebt generate RUN --prompt TEXT``: sample text from a trained text model, streamed as it is produced.

Tokens are printed as soon as they are chosen, decoded incrementally (an incomplete UTF-8 sequence is held
back until it completes, invalid bytes become U+FFFD: the output is always valid UTF-8). Memory stays bounded
whatever ``--max-new-tokens``: only the model's window is kept. The memory of thinking about the next token of
every prompt (``--steps``, ``--samples``, the number of prompts) is estimated before the run is loaded, and a
generation that cannot fit is refused in one line (:mod:`ebtkit.core.estimate_inference`).

* Decoding: greedy by default; ``--temperature T`` (> 0) samples, optionally restricted by ``--top-k`` and
  ``--top-p``. ``--top-k`` / ``--top-p`` without a temperature > 0 is an error (they shape a distribution that
  greedy decoding never samples from).
* Randomness: when the output depends on random numbers (sampling; an EBT's random initial candidates or
  Langevin noise), a random seed is used unless ``--seed`` is given, and the seed is printed on stderr so the
  sample can be repeated. Greedy decoding of a model that draws nothing prints no seed.
* ``--stop STRING`` (repeatable; ``\\n``, ``\\t``, ``\\\\`` are understood): a completion ends at the first stop
  string, which is not printed; text that may turn out to be the start of a stop string is held back (at most
  the longest stop string's length − 1 characters) until the next token decides.
* ``--max-time SECONDS``: every completion ends once that much time has passed (at least one token); what was
  generated is printed and a note goes to stderr.
* ``--prompts FILE``: one prompt per line (empty lines skipped), generated as one batch; each completion is
  printed after a ``=== i/N ===`` line once all are done. Every prompt gets its own generator seeded with the
  seed, so a completion equals that prompt generated alone with the same seed.
* ``--out FILE``: also write the output, atomically once generation ends: the printed text for ``--prompt``,
  JSON lines (``index``, ``prompt``, ``completion``, ``finish`` = stop | length | time, ``stop``, ``tokens``,
  ``seed``) for ``--prompts``. Nothing is written on an error.
* ``--num-samples N`` (1 to :data:`NUM_SAMPLES_MAX`): N different samples of every prompt, drawn in one batch;
  sample j uses seed ``S + j - 1`` (S: ``--seed`` or the random seed), printed in its ``=== ... (seed S) ===``
  header and stored as ``seed`` (with ``sample``) in ``--out``'s JSON lines, so ``--seed S + j - 1`` without
  ``--num-samples`` reproduces it. It needs output that depends on random numbers (``--temperature`` > 0, or an
  EBT's random candidates); the samples are printed once all are done.
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from pathlib import Path

from ..core import checkpoint as ckpt
from ..core.thinking import is_energy_model
from ..eval.completion import complete
from ..tasks import load
from . import check_inference_memory, checks, run_config
from .output import atomic_write_text, check_file
from .think import add_policy_arguments, policy_from_args

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
# samples per prompt (--num-samples): they are rows of one batch, like best-of-N candidates (checks.SAMPLES_MAX);
# more is a typo's extra zeros, and memory is checked against the machine as well
NUM_SAMPLES_MAX = checks.SAMPLES_MAX


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` in a command-line string → newline, tab, CR, backslash."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


def stop_string(text: str) -> str:
    s = unescape(text)
    if not s:
        raise argparse.ArgumentTypeError("must not be empty")
    return s


stop_string.__name__ = "text"


def add_parser(sub):
    p = sub.add_parser("generate", help="generate text from a trained run (streamed)",
                       description="Continue a prompt (streamed) or every line of a file (batched) with a trained "
                       "text run.")
    p.add_argument("run", help="run directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", type=checks.nonempty_text, help="text to continue (streamed)")
    src.add_argument("--prompts", metavar="FILE", help="UTF-8 file with one prompt per line (empty lines skipped), "
                     "generated as one batch")
    p.add_argument("--max-new-tokens", type=checks.positive_int, default=200, help="tokens per completion, >= 1 "
                   "(default 200; memory stays flat however many)")
    p.add_argument("--temperature", type=checks.temperature, default=None,
                   help=f"sampling temperature in [0, {checks.TEMPERATURE_MAX:g}]; 0 = greedy (default)")
    p.add_argument("--top-p", type=checks.probability, default=None,
                   help="nucleus sampling threshold in (0, 1]; needs --temperature > 0")
    p.add_argument("--top-k", type=checks.nonneg_int, default=None,
                   help="sample among the k most likely tokens (0 = all); needs --temperature > 0")
    p.add_argument("--stop", type=stop_string, action="append", default=[], metavar="STRING",
                   help="end a completion at this text, not printed (repeatable; \\n and \\t understood)")
    p.add_argument("--max-time", type=checks.positive_float, default=None, metavar="SECONDS",
                   help="end generation after this many seconds of wall-clock time")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the output here: the text (--prompt) or JSON lines (--prompts)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole window for every token (reference)")
    p.add_argument("--num-samples", type=checks.int_range(1, NUM_SAMPLES_MAX), default=1, metavar="N",
                   help=f"N different samples of every prompt (1 to {NUM_SAMPLES_MAX}; default 1), sample j with "
                   "seed SEED + j - 1, printed beside it; needs --temperature > 0 or an EBT's random candidates")
    add_policy_arguments(p, seed_default=None, seed_help="seed (default: a random one, printed when used)")
    return p


def read_prompts(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"--prompts {path}: file not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"--prompts {path}: not UTF-8 text") from None
    except OSError as e:
        raise ValueError(f"--prompts {path}: cannot read ({e.strerror or e})") from None
    prompts = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts (one per line)")
    return prompts


def uses_randomness(model, temperature: float, sigma: float) -> bool:
    """Whether the output depends on random numbers: sampling, or an EBT's random initial candidates or
    Langevin noise."""
    if temperature > 0:
        return True
    if not is_energy_model(model):
        return False
    cfg = model.cfg
    return sigma > 0 or (getattr(cfg, "init", "normal") != "zeros" and getattr(cfg, "init_scale", 1.0) > 0)


def run(args) -> int:
    # every option is checked, and the output path too, before the run is loaded
    temperature = args.temperature or 0.0
    if temperature == 0 and (args.top_p is not None or args.top_k is not None):
        which = " and ".join(f for f, v in (("--top-p", args.top_p), ("--top-k", args.top_k)) if v is not None)
        raise ValueError(f"{which} shape sampling, which needs --temperature > 0 (1 = the model's own "
                         f"distribution); without it decoding is greedy")
    policy = policy_from_args(args)
    out_path = check_file(args.out, "--out") if args.out is not None else None
    prompts = read_prompts(args.prompts) if args.prompts is not None else [args.prompt]
    meta = ckpt.read_config(args.run)
    if meta["task"] != "text":
        raise ValueError(f"ebt generate needs a text run; {args.run} is a {meta['task']!r} run")
    cfg = run_config(meta)
    ebt = cfg.model.model == "ebt"
    # the next token of every prompt is thought about at once: a batch of len(prompts) rows, one position each
    n = args.num_samples
    check_inference_memory(cfg, args.device, "this generation", "lower --steps, --samples or --num-samples, or give "
                           "fewer prompts", rows=len(prompts) * n, positions=1, samples=policy.samples,
                           steps=(policy.steps or cfg.thinking.default_eval_steps) if ebt else 0)
    b = load(args.run)
    if b.task != "text":
        raise ValueError(f"ebt generate needs a text run; {args.run} is a {b.task!r} run")
    model, tok = b.model, b.tokenizer
    if is_energy_model(model):
        kwargs = {**policy.kwargs(), "steps": policy.steps if policy.steps is not None else b.eval_steps}
    elif policy != type(policy)():
        raise ValueError("thinking-policy options (--steps, --samples, ...) apply to EBT runs only")
    else:
        kwargs = {}
    for i, p in enumerate(prompts):
        if not tok.encode(p):
            raise ValueError(f"prompt {i + 1} encodes to no tokens")
    random = uses_randomness(model, temperature, args.sigma)
    if n > 1 and not random:
        raise ValueError(f"--num-samples {n} would give {n} identical samples: greedy decoding of this model draws no "
                         "random numbers; add --temperature > 0 (1 = the model's own distribution)")
    seed = None
    if random:
        seed = args.seed if args.seed is not None else secrets.randbits(31)
        print(f"seed: {seed}" if n == 1 else f"seeds: {seed} to {sample_seed(seed, n - 1)} (sample j: seed "
              f"{seed} + j - 1)", file=sys.stderr, flush=True)
    elif args.seed is not None:
        print("note: --seed has no effect: greedy decoding of this model draws no random numbers", file=sys.stderr)
    opts = dict(temperature=temperature, top_p=args.top_p or 1.0, top_k=args.top_k or 0, cached=not args.no_cache,
                stop=args.stop, seed=seed or 0, max_time=args.max_time, **kwargs)
    stdout = sys.stdout
    if n > 1:
        return _samples(model, tok, prompts, args, opts, seed, out_path)
    if args.prompts is None:
        stdout.write(prompts[0])
        stdout.flush()

        def show(row: int, text: str) -> None:
            stdout.write(text)
            stdout.flush()

        (c,) = complete(model, tok, prompts, args.max_new_tokens, on_text=show, **opts)
        stdout.write("\n")
        stdout.flush()
        result = prompts[0] + c.text + "\n"
        done = [c]
    else:
        done = complete(model, tok, prompts, args.max_new_tokens, **opts)
        for i, c in enumerate(done):
            stdout.write(f"=== {i + 1}/{len(done)} ===\n{c.prompt}{c.text}\n")
        stdout.flush()
        result = "".join(json.dumps({"index": i, "prompt": c.prompt, "completion": c.text, "finish": c.finish,
                                     "stop": c.stop, "tokens": len(c.tokens), "seed": seed}, ensure_ascii=False) + "\n"
                         for i, c in enumerate(done))
    timed = [i for i, c in enumerate(done) if c.finish == "time"]
    if timed:
        n = max(len(done[i].tokens) for i in timed)
        print(f"stopped: --max-time {args.max_time:g} s reached ({n} token{'s' if n != 1 else ''} generated)",
              file=sys.stderr)
    if out_path is not None:
        atomic_write_text(out_path, result)
        print(f"out: {out_path}", file=sys.stderr)
    return 0


def sample_seed(seed: int, j: int) -> int:
    """The seed of sample ``j + 1`` of every prompt (``j`` from 0): consecutive from ``seed``, within the seeds
    ``--seed`` takes."""
    return (seed + j) % (checks.SEED_MAX + 1)


def _samples(model, tok, prompts: list[str], args, opts: dict, seed: int, out_path) -> int:
    """``--num-samples N``: every prompt N times in one batch, sample j with :func:`sample_seed` (so that
    ``--seed`` that seed, alone, gives the same text); each is printed after a header naming its seed, and
    ``--out`` gets the printed text (``--prompt``) or JSON lines with ``sample`` and ``seed`` (``--prompts``)."""
    n = args.num_samples
    rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
    seeds = [sample_seed(seed, j) for _, j in rows]
    done = complete(model, tok, [prompts[i] for i, _ in rows], args.max_new_tokens,
                    **{**opts, "seed": seeds})
    many = len(prompts) > 1
    printed, lines = [], []
    for (i, j), s, c in zip(rows, seeds, done):
        where = f"{i + 1}/{len(prompts)} " if many else ""
        printed.append(f"=== {where}sample {j + 1}/{n} (seed {s}) ===\n{c.prompt}{c.text}\n")
        lines.append(json.dumps({"index": i, "sample": j + 1, "prompt": c.prompt, "completion": c.text,
                                 "finish": c.finish, "stop": c.stop, "tokens": len(c.tokens), "seed": s},
                                ensure_ascii=False) + "\n")
    sys.stdout.write("".join(printed))
    sys.stdout.flush()
    timed = [len(c.tokens) for c in done if c.finish == "time"]
    if timed:
        print(f"stopped: --max-time {args.max_time:g} s reached ({max(timed)} token{'s' if max(timed) != 1 else ''} "
              "generated)", file=sys.stderr)
    if out_path is not None:
        atomic_write_text(out_path, "".join(printed) if args.prompts is None else "".join(lines))
        print(f"out: {out_path}", file=sys.stderr)
    return 0
