"""Leading principal directions of a sample of rows (a randomised range finder).

Shared by ``ivf-pca`` (its lower-bound embedding) and the projection screen of the exact
decisions (:mod:`eprmetrics.neighbours.screen`): both need ``m`` orthonormal directions that hold
as much of the rows' variance as a cheap fit allows. Orthonormality is what makes projected
distances lower bounds; how well the directions are chosen only decides how tight the bounds are.
"""

from __future__ import annotations

import torch

__all__ = ["principal_basis"]


def principal_basis(centred: torch.Tensor, m: int, seed: int, power_iters: int = 3) -> torch.Tensor:
    """``d × m`` float64 matrix with orthonormal columns spanning the leading principal directions of the
    rows of ``centred`` (fp32, already centred; used as it is, not modified).

    Example:
        >>> import torch
        >>> x = torch.randn(500, 40) * torch.linspace(3, 0.1, 40)
        >>> q = principal_basis(x - x.mean(0), 5, seed=0)
        >>> tuple(q.shape), bool(torch.allclose(q.T @ q, torch.eye(5, dtype=torch.float64)))
        ((40, 5), True)
    """
    d = centred.shape[1]
    g = torch.Generator(device=centred.device).manual_seed(int(seed))
    q = torch.randn(d, min(d, m + 16), generator=g, device=centred.device)
    for _ in range(power_iters):  # power iterations sharpen the leading directions
        q = torch.linalg.qr(centred.T @ (centred @ q)).Q
    _, _, vh = torch.linalg.svd(centred @ q, full_matrices=False)
    return torch.linalg.qr((q @ vh.T[:, :m]).double()).Q
