"""Models of the reasoning task: one trunk per problem shape, three ways to answer with it.

A **trunk** reads the problem ``x`` and a candidate point ``u`` (the answer matrix, or per-cell probabilities) and
returns features: per element (rows, node pairs, positions, cells) or one global vector (the MLP). Every model
of a run is built from the same trunk at the same width and depth:

* ``ebt`` (:class:`ReasonEBT`): energy ``E(x, u) = Σ_elements w·h``, one scalar per instance; it answers by
  thinking (:func:`~ebtkit.core.thinking.think`) from a random start. Categorical candidates are logits stepped on
  the simplex (the text task's update rules, :data:`~ebtkit.core.thinking.TEXT_UPDATES`).
* ``feedforward`` (:class:`ReasonFeedForward`): one pass, ``y = head(trunk(x, 0))``.
* ``looped`` (:class:`ReasonLooped`): weight-tied iteration in the answer space that re-reads ``x`` every time,
  ``y_{k+1} = y_k + head(trunk(x, u(y_k)))`` (Deep Thinking's recall, with the candidate as the carried state); it
  can iterate more at test time. One network evaluation per iteration, as one thinking step is one NFE.

Architectures (``arch``), chosen per problem so the model can run at sizes it never saw where the problem's size
changes (docs/reasoning.md):

* ``mlp`` — IREM's energy: an MLP (SiLU) on the flattened ``[x; u]`` (fixed-size matrices only);
* ``transformer`` — ebtkit's pre-norm blocks (:class:`~ebtkit.core.nn.Block`, explicit-matmul attention, so
  double backward works), bidirectional, tokens = matrix rows (no positions: equivariant to permuting rows),
  sequence positions (RoPE) or Sudoku cells (row, column and box embeddings);
* ``pairs`` — a pair representation ``h_ij`` with a triangle update ``Σ_k a_ik ⊙ b_kj`` (mean and max over k, as in
  AlphaFold's triangle multiplication): equivariant to permuting nodes, any number of nodes;
* ``conv`` — residual 1-D convolutions over positions: any length, receptive field ``2·layers + 1`` per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..nn import Block, RMSNorm
from ..nn.attention import attention
from ..nn.rope import Rope
from ..thinking import GRADIENT, TEXT_UPDATES, BoundEnergy, StepSize

REASON_MODELS = ("ebt", "feedforward", "looped")
ARCHS = ("mlp", "transformer", "pairs", "conv")
INITS = ("uniform", "normal", "zeros")


@dataclass
class ReasonModelConfig(Config):
    """Architecture and step size of a reasoning model (the problem's shapes come from the data section)."""

    model: str = "ebt"                 # ebt | feedforward | looped
    arch: str = "mlp"                  # mlp | transformer | pairs | conv (per problem: docs/reasoning.md)
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4                   # transformer
    ffn_mult: float = 2.0              # transformer: SwiGLU hidden = d_model × ffn_mult
    alpha: float = 1.0                 # EBT step size α
    alpha_learnable: bool = True
    update: str = "code"               # categorical candidates: simplex rule (code | logits | mirror)
    init: str = "uniform"              # start of thinking / looping: U(-s, s) | N(0, s²) | zeros
    init_scale: float = 1.0

    def __post_init__(self):
        for name, value, choices in (("model", self.model, REASON_MODELS), ("arch", self.arch, ARCHS),
                                     ("update", self.update, tuple(TEXT_UPDATES)), ("init", self.init, INITS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")
        for n in ("d_model", "n_layers", "n_heads", "ffn_mult", "alpha", "init_scale"):
            if not getattr(self, n) > 0:
                raise ValueError(f"{n} must be > 0, got {getattr(self, n)}")
        if self.arch == "transformer" and (self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2):
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")


@dataclass(frozen=True)
class Shape:
    """What a model needs to know of its problem: the problem's name and size, the candidate's kind and classes."""

    problem: str
    size: int
    kind: str            # continuous | categorical
    classes: int = 0


# ------------------------------------------------------------------------------------------------ trunks
def _mlp(d_in: int, d: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else d, d), nn.SiLU()]
    return nn.Sequential(*mods)


class MLPTrunk(nn.Module):
    """IREM's energy trunk: an MLP on the flattened problem and candidate → one global feature vector."""

    global_features = True

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__()
        if shape.problem not in ("addition", "inverse"):
            raise ValueError(f"arch 'mlp' needs a fixed-size problem (addition, inverse), not {shape.problem!r}")
        n = shape.size
        d_x = (2 if shape.problem == "addition" else 1) * n * n
        self.net = _mlp(d_x + n * n, cfg.d_model, cfg.n_layers)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), u.flatten(1)], 1))          # B, D


class BlockStack(nn.Module):
    """Bidirectional pre-norm blocks (no mask) over tokens, with optional RoPE positions."""

    def __init__(self, cfg: ReasonModelConfig, rope: bool):
        super().__init__()
        D = cfg.d_model
        hidden = max(1, int(round(D * cfg.ffn_mult)))
        self.blocks = nn.ModuleList([Block(D, cfg.n_heads, hidden) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(D)
        self.rope = Rope(D // cfg.n_heads) if rope else None
        self.head_dim = D // cfg.n_heads

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        T = h.shape[1]
        if self.rope is not None:
            cos, sin = self.rope(torch.arange(T, device=h.device), h.dtype, T)
        else:                                                                # no positions: identity rotation
            cos = torch.ones(T, self.head_dim, device=h.device, dtype=h.dtype)
            sin = torch.zeros(T, self.head_dim, device=h.device, dtype=h.dtype)
        attend = lambda q, k, v: attention(q, k, v, None)                    # noqa: E731
        for blk in self.blocks:
            h = blk(h, cos, sin, attend)
        return self.norm(h)


class TransformerTrunk(nn.Module):
    """Tokens = matrix rows (addition, inverse), positions (parity) or cells (sudoku, with row/column/box
    embeddings); node-level tokens cannot hold a pair answer, so connectivity uses :class:`PairTrunk`."""

    global_features = False

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__()
        if shape.problem == "connectivity":
            raise ValueError("arch 'transformer' has no pair tokens; connectivity uses arch 'pairs'")
        self.problem, n, K, D = shape.problem, shape.size, shape.classes, cfg.d_model
        d_in = {"addition": 3 * n, "inverse": 2 * n, "parity": 1 + K, "sudoku": 10 + K}[shape.problem]
        self.embed = nn.Linear(d_in, D)
        if shape.problem == "sudoku":
            self.row, self.col, self.box = nn.Embedding(9, D), nn.Embedding(9, D), nn.Embedding(9, D)
            idx = torch.arange(81)
            self.register_buffer("cells", torch.stack([idx // 9, idx % 9, (idx // 27) * 3 + (idx % 9) // 3]),
                                 persistent=False)
        self.stack = BlockStack(cfg, rope=shape.problem == "parity")

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.problem == "addition":
            tok = torch.cat([x[:, 0], x[:, 1], u], -1)                        # B, n, 3n
        elif self.problem == "inverse":
            tok = torch.cat([x, u], -1)                                       # B, n, 2n
        elif self.problem == "parity":
            tok = torch.cat([x.unsqueeze(-1), u], -1)                         # B, L, 1+K
        else:
            given = F.one_hot(x.long(), 10).to(u.dtype)                        # B, 81, 10
            tok = torch.cat([given, u], -1)
        h = self.embed(tok)
        if self.problem == "sudoku":
            r, c, b = self.cells
            h = h + self.row(r) + self.col(c) + self.box(b)
        return self.stack(h)                                                  # B, T, D


class TriangleBlock(nn.Module):
    """``h_ij += W[mean_k(a_ik ⊙ b_kj), max_k(a_ik ⊙ b_kj)]`` then ``h_ij += MLP(h_ij)`` (pre-norm): one hop of
    path composition per block, for any number of nodes."""

    def __init__(self, d: int):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(2 * d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:                      # B, n, n, D
        z = self.norm1(h)
        a, b = self.a(z), self.b(z)
        prod = a.unsqueeze(3) * b.unsqueeze(1)                                # B, i, k, j, D
        h = h + self.out(torch.cat([prod.mean(2), prod.amax(2)], -1))
        return h + self.mlp(self.norm2(h))


class PairTrunk(nn.Module):
    """Connectivity: pair features from ``[A_ij, A_ji, u_ij, u_ji, δ_ij]`` and :class:`TriangleBlock` s."""

    global_features = False

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__()
        if shape.problem != "connectivity":
            raise ValueError(f"arch 'pairs' is for connectivity, not {shape.problem!r}")
        K = shape.classes
        self.embed = nn.Linear(3 + 2 * K, cfg.d_model)
        self.blocks = nn.ModuleList([TriangleBlock(cfg.d_model) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        eye = torch.eye(n, device=x.device, dtype=u.dtype).expand(x.shape)
        feats = torch.cat([x.unsqueeze(-1), x.transpose(1, 2).unsqueeze(-1), eye.unsqueeze(-1), u,
                           u.transpose(1, 2)], -1)
        h = self.embed(feats)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)                                                   # B, n, n, D


class ConvTrunk(nn.Module):
    """Parity: residual 1-D convolutions (kernel 3) over ``[x; u]`` channels."""

    global_features = False

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__()
        if shape.problem != "parity":
            raise ValueError(f"arch 'conv' is for parity, not {shape.problem!r}")
        D = cfg.d_model
        self.embed = nn.Conv1d(1 + shape.classes, D, 3, padding=1)
        self.blocks = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Conv1d(D, D, 3, padding=1), nn.SiLU(),
                                                   nn.Conv1d(D, D, 3, padding=1)) for _ in range(cfg.n_layers)])

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        h = self.embed(torch.cat([x.unsqueeze(1), u.transpose(1, 2)], 1))    # B, D, L
        for blk in self.blocks:
            h = h + blk(h)
        return F.silu(h).transpose(1, 2)                                      # B, L, D


TRUNKS = {"mlp": MLPTrunk, "transformer": TransformerTrunk, "pairs": PairTrunk, "conv": ConvTrunk}


def candidate_shape(shape: Shape, x: torch.Tensor) -> tuple[int, ...]:
    """The candidate's shape for problems ``x``: the answer matrix, or per-cell logits over the classes."""
    B = x.shape[0]
    if shape.problem == "addition":
        return (B, x.shape[-2], x.shape[-1])
    if shape.problem == "inverse":
        return tuple(x.shape)
    if shape.problem == "connectivity":
        return (B, x.shape[-1], x.shape[-1], shape.classes)
    return (B, x.shape[-1], shape.classes)                                    # parity (B, L, 2), sudoku (B, 81, 9)


# ------------------------------------------------------------------------------------------------ models
class ReasonModel(nn.Module):
    """The trunk plus what every model of the task shares: the start of thinking/looping and the candidate point."""

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__()
        self.shape, self.cfg = shape, cfg
        self.trunk = TRUNKS[cfg.arch](shape, cfg)
        self.update = TEXT_UPDATES[cfg.update] if shape.kind == "categorical" else GRADIENT

    def point(self, y: torch.Tensor) -> torch.Tensor:
        """What the trunk reads of a candidate: probabilities for categorical candidates, else the candidate."""
        return self.update.point(y)

    def initial_candidates(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        shp = candidate_shape(self.shape, x)
        dev = generator.device if generator is not None else x.device
        s = self.cfg.init_scale
        if self.cfg.init == "zeros":
            y = torch.zeros(shp, device=x.device)
        elif self.cfg.init == "normal":
            y = torch.randn(shp, generator=generator, device=dev).to(x.device) * s
        else:
            y = (torch.rand(shp, generator=generator, device=dev).to(x.device) * 2 - 1) * s
        return y.to(x.dtype)

    def trunk_params(self) -> int:
        return sum(p.numel() for p in self.trunk.parameters())


class ReasonEBT(ReasonModel):
    """``E(x, u) = Σ_elements w·trunk(x, u)`` (B,). Satisfies :class:`~ebtkit.core.thinking.EnergyModel`."""

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__(shape, cfg)
        self.head = nn.Linear(cfg.d_model, 1, bias=False)
        self.step_size = StepSize(cfg.alpha, cfg.alpha_learnable)

    def energy(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        e = self.head(self.trunk(x, u)).squeeze(-1)
        return e if e.dim() == 1 else e.flatten(1).sum(1)

    def energy_fn(self, x: torch.Tensor) -> BoundEnergy:
        """``(point, landscape) -> E`` for :func:`~ebtkit.core.thinking.think`, bound to the candidate's update rule
        (the energy receives probabilities for categorical candidates)."""
        return BoundEnergy(lambda u, landscape: self.energy(x, u), self.update)


class ReasonFeedForward(ReasonModel):
    """One pass: ``y = head(trunk(x, 0))`` (the candidate input is held at zero)."""

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__(shape, cfg)
        self.head = _answer_head(shape, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(candidate_shape(self.shape, x), device=x.device, dtype=x.dtype)
        return _answer(self, x, zero)


class ReasonLooped(ReasonModel):
    """``y_{k+1} = y_k + head(trunk(x, u(y_k)))``: weight-tied, re-reads ``x`` each iteration."""

    def __init__(self, shape: Shape, cfg: ReasonModelConfig):
        super().__init__(shape, cfg)
        self.head = _answer_head(shape, cfg)

    def iterate(self, x: torch.Tensor, y0: torch.Tensor, steps: int, detach: bool = False) -> list[torch.Tensor]:
        """``[y_0, y_1, …, y_steps]``; gradients flow through every iteration unless ``detach``."""
        ys = [y0]
        y = y0
        for _ in range(steps):
            y = y + _answer(self, x, self.point(y))
            if detach:
                y = y.detach()
            ys.append(y)
        return ys


def _answer_head(shape: Shape, cfg: ReasonModelConfig) -> nn.Linear:
    D = cfg.d_model
    if cfg.arch == "mlp":
        return nn.Linear(D, shape.size * shape.size)
    if shape.kind == "categorical":
        return nn.Linear(D, shape.classes)
    return nn.Linear(D, shape.size)                                           # one matrix row per row token


def _answer(model: ReasonModel, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    out = model.head(model.trunk(x, u))
    return out.reshape(candidate_shape(model.shape, x))


MODEL_CLASSES = {"ebt": ReasonEBT, "feedforward": ReasonFeedForward, "looped": ReasonLooped}


def build_reason_model(shape: Shape, cfg: ReasonModelConfig) -> ReasonModel:
    if cfg.model not in MODEL_CLASSES:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[cfg.model](shape, cfg)


__all__ = ["ReasonModelConfig", "Shape", "ReasonModel", "ReasonEBT", "ReasonFeedForward", "ReasonLooped",
           "build_reason_model", "candidate_shape", "REASON_MODELS", "ARCHS", "TRUNKS"]
