"""Compact results: offsets (T, V, 3) == bias + weights (T, K) @ basis (K, V, 3).

Far lighter to ship and to write into Blender as K shape keys with one F-curve each. For
FaceFormer the basis is exact: the output layer is linear, so the decoder states are the
weights and the layer's weight columns the basis. Otherwise a truncated SVD of the
mean-centred offsets, with K the smallest that keeps the worst vertex error under a bound.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_MAX_ERROR = 1e-4  # model units: 0.1 mm for FLAME/VOCASET (metres)
MAX_KEYS = 64


def exact_linear_basis(states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> dict:
    """``offsets = states @ weight.T + bias`` as a basis result (no approximation)."""
    k = weight.shape[1]
    return {
        "weights": states.detach().float().cpu().numpy(),
        "basis": weight.detach().t().reshape(k, -1, 3).float().cpu().numpy(),
        "bias": bias.detach().reshape(-1, 3).float().cpu().numpy(),
        "max_error": np.float32(0.0),
        "exact": True,
    }


def _max_vertex_error(residual: torch.Tensor) -> float:
    return float(residual.reshape(residual.shape[0], -1, 3).norm(dim=-1).max())


def svd_basis(offsets: torch.Tensor, max_error: float = DEFAULT_MAX_ERROR, max_keys: int = MAX_KEYS) -> dict:
    """Truncated SVD of ``offsets`` (T, V*3): the smallest K <= max_keys meeting ``max_error``."""
    x = offsets.reshape(offsets.shape[0], -1).double()
    bias = x.mean(0)
    centred = x - bias
    rank_cap = min(max_keys, *centred.shape)
    if min(centred.shape) <= 4 * rank_cap:
        u, s, vh = torch.linalg.svd(centred, full_matrices=False)
    else:  # randomised, with a little oversampling and two power iterations
        u, s, v = torch.svd_lowrank(centred, q=min(rank_cap + 8, min(centred.shape)), niter=2)
        vh = v.t()
    u, s, vh = u[:, :rank_cap], s[:rank_cap], vh[:rank_cap]

    def error(k: int) -> float:
        return _max_vertex_error(centred - (u[:, :k] * s[:k]) @ vh[:k]) if k else _max_vertex_error(centred)

    lo, hi = 0, rank_cap  # error(hi) is the best we can do; find the smallest k meeting the bound
    if error(hi) > max_error:
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if error(mid) <= max_error:
            hi = mid
        else:
            lo = mid + 1
    k = lo
    return {
        "weights": (u[:, :k] * s[:k]).float().numpy(),
        "basis": vh[:k].reshape(k, -1, 3).float().numpy(),
        "bias": bias.reshape(-1, 3).float().numpy(),
        "max_error": np.float32(error(k)),
        "exact": False,
    }
