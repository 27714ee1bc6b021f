"""Sizes before building: parameter counts and training memory of a run's config, and the guard that refuses a run
that cannot fit its device.

Everything here is arithmetic on the config (no model is built, nothing is allocated), so it takes microseconds
for any size: ``ebt train --set model.n_layers=100000`` is refused at once instead of growing to the machine's
whole memory. The config is any run config with ``model``, ``thinking`` and ``train`` sections — the text
``RunConfig``, the denoising and the sequence run configs alike; which model it builds is read from the type of
its ``model`` section (:class:`~ebtkit.core.config.ModelConfig`, :class:`~ebtkit.core.models.image.ImageModelConfig`,
:class:`~ebtkit.core.models.sequence.SequenceModelConfig`) and ``model.model``.

**Parameters** (exact; ``tests/test_estimate.py`` checks them against ``sum(p.numel())`` of built models). With
D width, L layers, hidden ``Hf = round(D · ffn_mult)`` (``round(D · mlp_ratio)`` for images), V vocabulary, F
features, n landscapes, ``P = p²C`` values per patch, one Llama block has ``4D² + 3D·Hf + 2D`` parameters and the
backbone (the "non-embedding" count) ``L(4D² + 3D·Hf + 2D) + D``; one adaLN-Zero block has
``D(3D) + 3D + D² + D + 2D·Hf + Hf + D + 6D² + 6D`` (qkv, proj, MLP, modulation), its trunk ``L`` of them.

* text EBT: backbone + ``V·D`` (token embedding) + ``V·D`` (candidate projection, unless tied) + ``n·D`` (step
  embedding, unless ``step_cond = "none"``) + ``D`` (energy head) + 1 (α, when learnable);
* Transformer++: backbone + ``2·V·D`` (embedding, untied head);
* sequence EBT: backbone + ``F·D + D`` (input projection; twice when ``candidate_proj = "separate"``) + step
  embedding + ``D`` + α; regressor: backbone + ``F·D + D`` + ``D·F + F``;
* image EBT: trunk + ``P·D + D`` (patches) + ``n·D`` (constants) + ``2D² + 2D + D`` (final adaLN layer) + α; DiT:
  trunk + ``P·D + D`` + ``f·D + D + D² + D`` (timestep MLP, ``f = timestep_freq_dim or D``) + ``2D² + 2D + D·P + P``.

**Training memory** of one step of one process = model state + activations + a fixed overhead (+ the System 2
replay buffer):

* model state: fp32 weights, fp32 gradients and AdamW's two fp32 moments = 16 bytes per parameter in every
  precision (autocast casts activations only; ZeRO-1, ``train.zero = 1``, splits the moments over the ranks). The
  optimizer's step adds a transient of ``OPTIMIZER_TRANSIENT`` bytes per parameter (foreach temporaries; measured
  4.7), which does not overlap the activations (they are freed by then):
  ``total = state + replay + overhead + max(activations, OPTIMIZER_TRANSIENT · N)``.
* activations: what the backward pass keeps plus its transients at the peak, per sequence, times the batch's rows
  (System 2 replay appends ``round(replay_fraction · B)`` of them). They are a linear form in per-sequence element
  counts (:func:`terms`) with coefficients per model kind (:data:`COEFFICIENTS`, bytes per element, fp32). With S
  context, T = S + P context tokens (P = 1 with the step token), h heads, W candidate width (V for text, F for
  sequences), N the largest thinking step count (``max_steps or steps``) and G the steps that build a second-order
  graph (N for System 1, whose every step's graph lives until the loss's backward; 1 for System 2, which
  truncates):

  - autoregressive EBT: the observed stream once, first order (``L·T·D``, ``L·T·Hf``, ``L·h·T²``), plus G times
    the prediction stream with its double-backward graph (``L·S·D``, ``L·S·Hf``, ``L·h·A`` with A the score
    entries of the blocked prediction attention, ``S·(S+1)`` for S ≤ 64, fewer beyond) and the candidate tensors
    (``S·W``: softmax, projection input, ∇E, the new candidate, the loss), plus ``(N − G)·S·W`` for the System 2
    steps whose candidates stay in the graph without a second-order graph. With activation checkpointing
    (``train.checkpoint_blocks``) the block terms count one layer and ``G·L·S·D`` block inputs are added — it
    saves only 7–10 % of the peak here, because the ∇E graph built with ``create_graph`` holds the recomputed
    activations until the outer backward (LOG.md finds the same in saved bytes);
  - Transformer++ (first order; its fused attention keeps no score matrix): ``L·S·D``, ``L·S·Hf``, ``L·h·S²``,
    the head ``S·W``;
  - image EBT: G times ``L·T·D``, ``L·T·Hf``, ``L·h·T²`` (T patches) and ``T·P``, plus ``(N − G)·T·P``; DiT
    (first order, fused attention): ``L·T·D``, ``L·T·Hf``, ``L·h·T²``, ``T·P``.
* overhead: allocations of a step that do not scale with it (``"const"``, ~11 MB on the CPU).
* bf16/fp16 autocast: activations × ``ACTIVATIONS_16BIT`` = 0.8. Measured with CPU autocast: 0.71–0.95 of the
  fp32 activations for the autoregressive models (autocast keeps fp32 inputs beside their bf16 casts, and norms,
  softmax and the thinking candidate stay fp32), 1.11 for the image EBT; 0.8 keeps every measured bf16 step within
  the stated factor. CUDA autocast was not measured.

**Calibration.** ``benchmarks/bench_memory_estimate.py`` measures real training steps on the CPU and fits the
coefficients (non-negative least squares on relative error; backbone terms and the overhead shared within a family:
autoregressive EBTs, Transformer++, image EBT, DiT): every configuration in its own process, peak resident set of
two optimizer steps (the task's loss through thinking, backward, clipping, AdamW) minus the resident set before
them, plus the weights, with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed so that freed tensors leave the resident set
(this agrees with PyTorch's profiler memory timeline within 5–10 MB). 61 configurations around the ``tiny`` and
``cpu`` presets of every task (peaks of 42–621 MB; PyTorch 2.13, one thread, fp32 but for 5 bf16 ones) vary D,
``ffn_mult``/``mlp_ratio``, S, heads, L, V/F, patch size, thinking steps, System 1/2, the step token, activation
checkpointing and precision. Estimate / measured: 0.90–1.33 on those points (in sample); 0.83–1.10 when each fp32
configuration is left out of the fit that predicts it. :data:`STATED_FACTOR` (1.5) is the claim for
configurations like these; far larger models are extrapolations of the same linear form (their memory is
dominated by the same terms, so the form should hold, but it was not measured). Per-point ratios:
``benchmarks/results/memory_estimate.json``. Not covered: CUDA/MPS kernels (the CPU coefficients are used; fused
attention there keeps less, so the attention terms over-estimate), evaluation (smaller: no second-order graphs),
the data (a corpus in memory: a few MB for the built-in ones) and the Python/PyTorch runtime (~300–400 MB of RSS
on the CPU, ~0.5 GB of CUDA context).

**The guard.** :func:`check_fits` estimates a run and raises :class:`DoesNotFitError` (a ``ValueError``: one line,
exit status 2 from the CLI) when the estimate exceeds the memory the device has free: the CPU's ``MemAvailable``
(``psutil`` when installed, else ``/proc/meminfo``; the cgroup limit when lower), ``torch.cuda.mem_get_info`` on
CUDA, ``torch.mps.recommended_max_memory`` on MPS; nothing is checked where the platform reports nothing. Processes
of one run on one CPU share its RAM, so their estimates add up. Set ``EBT_CHECK_MEMORY=0`` to skip the check:
whether a run fits is a property of the machine, not of the run, so it is an environment variable rather than a
config key saved with the run (which would follow the run to other machines and could not change on resume).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import ModelConfig
from .device import resolve_device, resolve_precision
from .models.image import ImageModelConfig
from .models.sequence import SequenceModelConfig
from .nn.prediction_attention import DEFAULT_BLOCK

STATE_BYTES_PER_PARAM = 16          # fp32 weights + fp32 gradients + AdamW exp_avg + exp_avg_sq
OPTIMIZER_TRANSIENT = 5.0           # bytes per parameter of temporaries inside AdamW's (foreach) step
ACTIVATIONS_16BIT = 0.8             # bf16/fp16 autocast: activation bytes relative to fp32 (CPU: 0.71–1.11)
STATED_FACTOR = 1.5                 # estimate / measured peak within [1/1.5, 1.5] (calibration: 0.83–1.33)
ENV_SWITCH = "EBT_CHECK_MEMORY"     # "0" / "false" / "off" / "no" skips check_fits

# bytes per element (fp32) of each term of terms(); fitted by benchmarks/bench_memory_estimate.py
COEFFICIENTS: dict[str, dict[str, float]] = {
    "text-ebt": {"ctx_tok": 66.7, "ctx_ffn": 0.0, "ctx_att": 5.0, "step_tok": 107.0, "step_ffn": 54.8,
                "step_att": 13.5, "step_cand": 19.9, "free_cand": 6.2, "ckpt_in": 126.9, "const": 11700000.0},
    "sequence-ebt": {"ctx_tok": 66.7, "ctx_ffn": 0.0, "ctx_att": 5.0, "step_tok": 107.0, "step_ffn": 54.8,
                    "step_att": 13.5, "step_cand": 20.1, "free_cand": 5.7, "ckpt_in": 126.9, "const": 11700000.0},
    "text-transformer++": {"tok": 44.2, "ffn": 15.3, "att": 0.1, "head": 11.7, "const": 10700000.0},
    "sequence-transformer++": {"tok": 44.2, "ffn": 15.3, "att": 0.1, "head": 17.6, "const": 10700000.0},
    "image-ebt": {"step_tok": 88.2, "step_ffn": 23.0, "step_att": 18.8, "step_pix": 0.0, "free_pix": 0.0,
                 "const": 13200000.0},
    "image-dit": {"tok": 53.8, "ffn": 7.6, "att": 0.0, "pix": 416.9, "const": 0.0},
}



class DoesNotFitError(ValueError):
    """A run whose estimated training memory exceeds what its device has free (one line for the CLI)."""


# ------------------------------------------------------------------------------------------- parameters
def _hidden(d: int, mult: float) -> int:
    return max(1, int(round(d * mult)))


def llama_backbone_params(d: int, n_layers: int, ffn_hidden: int) -> int:
    """Parameters of :class:`~ebtkit.core.nn.blocks.Backbone`: L Llama blocks and the final RMSNorm."""
    return n_layers * (4 * d * d + 3 * d * ffn_hidden + 2 * d) + d


def adaln_trunk_params(d: int, n_layers: int, hidden: int) -> int:
    """Parameters of :class:`~ebtkit.core.nn.adaln.AdaLNStack` (L adaLN-Zero blocks)."""
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden + hidden * d + d) + (6 * d * d + 6 * d)
    return n_layers * block


def model_kind(m) -> str:
    """``"text-ebt"``, ``"sequence-transformer++"``, ``"image-dit"``, … from a model config section."""
    if isinstance(m, ModelConfig):
        return f"text-{m.model}"
    if isinstance(m, SequenceModelConfig):
        return f"sequence-{m.model}"
    if isinstance(m, ImageModelConfig):
        return f"image-{m.model}"
    raise ValueError(f"no size estimate for a model config of type {type(m).__name__}")


def param_counts(m) -> tuple[int, int]:
    """``(total, non_embedding)`` parameters of the model a model config section builds, without building it.

    Non-embedding = the shared block stack (``non_embedding_params()`` / ``trunk_params()`` of the models)."""
    kind = model_kind(m)
    D = m.d_model
    alpha = 1 if getattr(m, "alpha_learnable", False) else 0
    if kind.startswith("image-"):
        hidden = _hidden(D, m.mlp_ratio)
        trunk = adaln_trunk_params(D, m.n_layers, hidden)
        pix = m.patch_size ** 2 * m.channels
        embed = pix * D + D
        if m.model == "ebt":
            return trunk + embed + m.n_landscapes * D + (2 * D * D + 2 * D + D) + alpha, trunk
        freq = m.timestep_freq_dim or D
        return trunk + embed + (freq * D + D + D * D + D) + (2 * D * D + 2 * D + D * pix + pix), trunk
    backbone = llama_backbone_params(D, m.n_layers, m.ffn_hidden)
    step = m.n_landscapes * D if m.step_cond != "none" else 0
    if kind == "text-ebt":
        V = m.vocab_size
        cand = V * D if m.candidate_proj == "linear" else 0
        return backbone + V * D + cand + step + D + alpha, backbone
    if kind == "text-transformer++":
        return backbone + 2 * m.vocab_size * D, backbone
    F = m.features
    if kind == "sequence-ebt":
        proj = (F * D + D) * (2 if m.candidate_proj == "separate" else 1)
        return backbone + proj + step + D + alpha, backbone
    return backbone + (F * D + D) + (D * F + F), backbone


# ------------------------------------------------------------------------------------------- activations
def _prediction_scores(S: int, P: int, block: int | None = DEFAULT_BLOCK) -> int:
    """Score entries per head of the blocked prediction attention (:class:`~ebtkit.core.nn.prediction_attention.
    CausalPlan`): block ``[a, b)`` scores ``b + P`` context keys plus itself."""
    step = S if not block or block >= S else block
    return sum((min(S, a + step) - a) * (min(S, a + step) + P + 1) for a in range(0, S, step))


def thinking_steps(cfg) -> tuple[int, int]:
    """``(N, G)``: the most thinking steps a training batch takes, and how many build a second-order graph."""
    t = cfg.thinking
    n = t.max_steps or t.steps
    return n, (n if t.system == "s1" else 1)


def terms(cfg) -> dict[str, float]:
    """Per-sequence element counts whose weighted sum (:data:`COEFFICIENTS`) is one sequence's activations."""
    m = cfg.model
    kind = model_kind(m)
    L, D, h = m.n_layers, m.d_model, m.n_heads
    ebt = m.model == "ebt"
    N, G = thinking_steps(cfg) if ebt else (0, 0)
    if kind.startswith("image-"):
        T, Hf, pix = m.num_patches, _hidden(D, m.mlp_ratio), m.patch_size ** 2 * m.channels
        if ebt:
            return {"step_tok": G * L * T * D, "step_ffn": G * L * T * Hf, "step_att": G * L * h * T * T,
                    "step_pix": G * T * pix, "free_pix": (N - G) * T * pix, "const": 0.0}
        return {"tok": L * T * D, "ffn": L * T * Hf, "att": L * h * T * T, "pix": T * pix, "const": 0.0}
    S, Hf = m.context, m.ffn_hidden
    W = m.vocab_size if kind.startswith("text-") else m.features
    if ebt:
        P = 1 if m.step_cond == "token" else 0
        T = S + P
        # activation checkpointing (train.checkpoint_blocks): each step keeps its blocks' inputs; the activations of
        # one block at a time are rebuilt in backward
        Lk = 1 if getattr(cfg.train, "checkpoint_blocks", False) else L
        return {"ctx_tok": L * T * D, "ctx_ffn": L * T * Hf, "ctx_att": L * h * T * T,
                "step_tok": G * Lk * S * D, "step_ffn": G * Lk * S * Hf, "step_att": G * Lk * h * _prediction_scores(S, P),
                "step_cand": G * S * W, "free_cand": (N - G) * S * W,
                "ckpt_in": G * L * S * D if Lk != L else 0, "const": 0.0}
    return {"tok": L * S * D, "ffn": L * S * Hf, "att": L * h * S * S, "head": S * W, "const": 0.0}


def training_rows(cfg) -> int:
    """Rows of one training batch: ``batch_size`` plus the System 2 replayed rows (an EBT with replay)."""
    B = cfg.train.batch_size
    t = cfg.thinking
    if cfg.model.model == "ebt" and t.replay_fraction > 0:
        B += max(1, int(round(t.replay_fraction * B)))
    return B


def replay_bytes(cfg) -> int:
    """The System 2 replay buffer: ``replay_size`` windows and their fp32 candidates (autoregressive EBTs)."""
    m, t = cfg.model, cfg.thinking
    if m.model != "ebt" or t.replay_fraction <= 0 or isinstance(m, ImageModelConfig):
        return 0
    W = m.vocab_size if isinstance(m, ModelConfig) else m.features
    window = (m.context + 1) * (8 if isinstance(m, ModelConfig) else 4 * m.features)   # int64 tokens | fp32 vectors
    return t.replay_size * (window + 4 * m.context * W)


# ------------------------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Estimate:
    """Parameters and training memory (bytes) of one run's config."""

    kind: str                        # "text-ebt", "image-dit", ...
    params: int
    non_embedding_params: int
    precision: str                   # the activations' precision: fp32 | bf16 | fp16
    rows: int                        # rows per training batch (batch_size + replayed rows)
    activation_bytes_per_sequence: int
    replay_bytes: int = 0
    overhead_bytes: int = 0          # fixed per-step allocations beyond tensors of the batch (calibrated "const")
    optimizer_shards: int = 1        # ZeRO-1 (train.zero = 1): AdamW's moments split over this many ranks
    terms: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def state_bytes(self) -> int:
        """fp32 weights and gradients, and this rank's share of AdamW's two fp32 moments."""
        return (STATE_BYTES_PER_PARAM - 8) * self.params + -(-8 * self.params // self.optimizer_shards)

    @property
    def activation_bytes(self) -> int:
        return self.rows * self.activation_bytes_per_sequence

    @property
    def total_bytes(self) -> int:
        """Training memory of one step at the config's batch."""
        return self.state_bytes + self.replay_bytes + self.overhead_bytes + \
            max(self.activation_bytes, int(OPTIMIZER_TRANSIENT * self.params))

    def describe(self) -> str:
        return (f"{self.params:,} parameters ({self.non_embedding_params:,} non-embedding); training needs about "
                f"{human_bytes(self.total_bytes)} at batch {self.rows} ({human_bytes(self.state_bytes)} weights, "
                f"gradients and AdamW state + {human_bytes(self.activation_bytes_per_sequence)} of {self.precision} "
                f"activations per sequence)")


def estimate(cfg, precision: str = "fp32", ranks: int = 1) -> Estimate:
    """Parameters and training memory of one process of run config ``cfg`` (no model is built). ``precision``: the
    autocast precision the activations run in (``fp32 | bf16 | fp16``); ``ranks``: processes of the run, over
    which ZeRO-1 (``train.zero = 1``) splits AdamW's state."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r} for a memory estimate; choose from fp32, bf16, fp16")
    own = getattr(cfg, "size_estimate", None)
    if own is not None:              # a task that estimates itself (the reasoning task: its trunks differ per problem)
        return own(precision, ranks)
    kind = model_kind(cfg.model)
    total, non_emb = param_counts(cfg.model)
    t = terms(cfg)
    coef = COEFFICIENTS[kind]
    per_seq = sum(coef[k] * v for k, v in t.items() if k != "const") * (ACTIVATIONS_16BIT if precision != "fp32" else 1.0)
    rows = training_rows(cfg)
    shards = max(1, ranks) if getattr(cfg.train, "zero", 0) == 1 else 1
    return Estimate(kind=kind, params=total, non_embedding_params=non_emb, precision=precision, rows=rows,
                    activation_bytes_per_sequence=int(per_seq), replay_bytes=replay_bytes(cfg),
                    overhead_bytes=int(coef.get("const", 0.0)), optimizer_shards=shards, terms=t)


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


# ------------------------------------------------------------------------------------------- free memory
def _meminfo_available() -> int | None:
    try:
        import psutil   # optional
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Room left under this process's cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            lim = Path(limit).read_text().strip()
            if lim == "max" or int(lim) >= 1 << 60:
                return None
            return max(0, int(lim) - int(Path(usage).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def available_memory(device) -> tuple[int | None, str]:
    """``(bytes, where)``: memory the device has free for a run now, and a name for it; ``None`` when the
    platform does not say (then nothing is checked)."""
    import torch

    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free), f"free on {dev}"
    if dev.type == "mps":
        rec = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        return (int(rec()), "MPS recommended maximum") if rec is not None else (None, "mps")
    if dev.type != "cpu":
        return None, str(dev)
    found = [(v, w) for v, w in ((_meminfo_available(), "available RAM"), (_cgroup_available(), "left under the "
                                                                                                  "cgroup limit"))
             if v is not None]
    return min(found) if found else (None, "cpu")


def check_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def check_fits(cfg, task_name: str, device="cpu", processes: int | None = None) -> Estimate:
    """Estimate run config ``cfg`` of task ``task_name`` on ``device`` (``auto | cpu | cuda[:N] | mps`` or a
    ``torch.device``); raise :class:`DoesNotFitError` when the estimate exceeds the device's free memory
    (skipped with ``EBT_CHECK_MEMORY=0``, and where the platform reports no figure). Returns the estimate (of one
    process).

    ``processes``: training processes on this machine (default ``LOCAL_WORLD_SIZE``, else 1). On the CPU they share
    the RAM, so the need is multiplied by them; on CUDA each rank has its own device. ZeRO-1 splits AdamW's state
    over ``WORLD_SIZE`` ranks (default: ``processes``)."""
    import torch

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    local = processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    ranks = int(os.environ.get("WORLD_SIZE", "0") or 0) or local
    prec = getattr(cfg.train, "precision", "fp32")
    prec = resolve_precision(prec, dev) if dev.type != "meta" else "fp32"
    est = estimate(cfg, prec, ranks)
    if not check_enabled() or dev.type == "meta":
        return est
    free, where = available_memory(dev)
    copies = local if dev.type == "cpu" else 1
    need = copies * est.total_bytes
    if free is not None and need > free:
        procs = f" in each of {copies} processes" if copies > 1 else ""
        raise DoesNotFitError(
            f"this {task_name} run needs about {human_bytes(need)} to train ({est.params:,} parameters: "
            f"{human_bytes(est.state_bytes)} of weights, gradients and AdamW state and "
            f"{human_bytes(est.activation_bytes)} of activations at batch {est.rows}{procs}), but {dev} has "
            f"{human_bytes(free)} {where}; make the model or batch smaller, or set {ENV_SWITCH}=0 to try anyway")
    return est


__all__ = ["Estimate", "DoesNotFitError", "estimate", "check_fits", "param_counts", "terms", "available_memory",
           "human_bytes", "COEFFICIENTS", "STATED_FACTOR"]
