"""Attention of the text EBT's prediction stream against a cached observed stream (twice differentiable).

Notation: B batch, H heads, R prediction rows, Tc cached context keys (``P`` prefix + observed tokens), hd head
width. Prediction row ``r`` attends to the cached context keys ``0..lim_r`` and to **itself only**::

    s_ctx[r, j] = q_r·k_j / √hd        (j ≤ lim_r, else −∞)       R × Tc
    s_self[r]   = q_r·k̂_r / √hd                                    R × 1
    w           = softmax([s_ctx ; s_self])
    o_r         = Σ_j w[r, j] v_j + w[r, self] v̂_r

No ``2S × 2S`` score matrix is formed (the paper's layout, App. C.3, scores ``[observed ; predictions]`` against
itself). Two details make it fast on CPU while keeping every op twice differentiable (``autograd.grad(...,
create_graph=True)`` then ``backward``, which the fused SDPA CPU kernel cannot do):

* the scale and the mask are folded into the score matmul as ``baddbmm(bias, q·scale, kᵀ)`` with an additive
  ``0 / −inf`` bias (no separate ``mul`` and ``masked_fill`` passes over R × Tc, in forward or in either backward);
* :func:`causal_prediction_attention` (the training layout: ``lim_r = r + offset``) processes the rows in blocks
  of ``block`` rows; block ``[a, b)`` only scores keys ``0..b-1+offset``, so the fully masked upper-right blocks
  are never computed. With ``block=64``: 2 blocks at S = 128 and 4 at S = 256 (25 % and 37.5 % fewer score
  FLOPs). Forward + double backward of the kernel alone is 1.3–1.75× faster than the first implementation
  (dense, separate scale/mask passes) on this CPU; smaller blocks lose to per-op overhead
  (``benchmarks/bench_attention.py``, ``docs/speed.md``).
"""
from __future__ import annotations

import torch

DEFAULT_BLOCK = 64


def visible_to_bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask (True = attend) → additive bias (0 where visible, −inf elsewhere), same shape."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, float("-inf"))


def prediction_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, k_self: torch.Tensor,
                         v_self: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Dense kernel. q/k_self/v_self (B,H,R,hd); k_ctx/v_ctx (B,H,Tc,hd); ``bias`` additive (R,Tc) or
    (B,1,R,Tc) with at least one finite entry per row. Returns (B,H,R,hd)."""
    B, H, R, hd = q.shape
    Tc = k_ctx.shape[2]
    qs = q * scale                                                              # B,H,R,hd
    if bias.dim() == 4:
        bias = bias.expand(B, H, R, Tc).reshape(B * H, R, Tc)
    s_ctx = torch.baddbmm(bias, qs.reshape(B * H, R, hd),
                          k_ctx.reshape(B * H, Tc, hd).transpose(1, 2)).view(B, H, R, Tc)
    s_self = (qs * k_self).sum(-1, keepdim=True)                                # B,H,R,1
    w = torch.softmax(torch.cat([s_ctx, s_self], -1), dim=-1)                   # B,H,R,Tc+1
    return w[..., :Tc] @ v_ctx + w[..., Tc:] * v_self                           # B,H,R,hd


class CausalPlan:
    """Row blocks and their biases for ``lim_r = r + offset`` (built once per call, reused by every layer).

    Block ``[a, b)`` sees keys ``0..b-1+offset`` (``n = b + offset`` keys); shapes are Python ints, so building
    the plan needs no host sync.
    """

    def __init__(self, R: int, Tc: int, offset: int, dtype: torch.dtype, device, block: int | None = DEFAULT_BLOCK):
        if R + offset > Tc:
            raise ValueError(f"{R} prediction rows with offset {offset} need {R + offset} cached keys, got {Tc}")
        step = R if not block or block >= R else block
        self.blocks: list[tuple[int, int, int, torch.Tensor]] = []
        for a in range(0, R, step):
            b = min(R, a + step)
            n = b + offset
            rows = torch.arange(a, b, device=device) + offset                   # lim_r for rows a..b-1
            vis = torch.arange(n, device=device)[None, :] <= rows[:, None]      # (b-a) × n
            self.blocks.append((a, b, n, visible_to_bias(vis, dtype)))


def causal_prediction_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, k_self: torch.Tensor,
                                v_self: torch.Tensor, plan: CausalPlan, scale: float) -> torch.Tensor:
    """Blocked kernel for the training layout (row r sees context keys ``0..r+offset``). Shapes as
    :func:`prediction_attention`; exactly equal to it with the full causal bias."""
    if len(plan.blocks) == 1:
        a, b, n, bias = plan.blocks[0]
        return prediction_attention(q, k_ctx[:, :, :n], v_ctx[:, :, :n], k_self, v_self, bias, scale)
    outs = [prediction_attention(q[:, :, a:b], k_ctx[:, :, :n], v_ctx[:, :, :n], k_self[:, :, a:b],
                                 v_self[:, :, a:b], bias, scale)
            for a, b, n, bias in plan.blocks]
    return torch.cat(outs, 2)                                                   # B,H,R,hd
