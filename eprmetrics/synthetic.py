"""Deterministic synthetic feature sets with VGG-like hubness, and defective "generators".

Features are ``relu(W z + b)``: ``z`` from a Gaussian mixture in a latent space,
``W`` random Gaussian, ``b`` a negative offset so most activations are zero
(non-negative and sparse like VGG-16 fc2). Rows are produced in fixed chunks of
:data:`CHUNK` rows, each from its own generator seeded by ``(seed, stream,
chunk)``, so the same ``(spec, n, stream)`` gives the same rows whatever the
device batch, and a 1.5M × 4096 set can be written chunk by chunk into a
memory map or generated directly on a GPU. (CPU and CUDA random streams
differ, so values are reproducible per device type.)

Defects of the generated ("fake") set, each with a ``strength`` in [0, 1]:

* ``"mode_drop"``: only the first ``(1 − strength)`` share of modes is sampled
  (precision stays high, recall falls);
* ``"truncation"``: the truncation trick, ``z ← z̄ + ψ (z − z̄)`` with
  ``ψ = 1 − strength`` (precision up, recall down);
* ``"outliers"``: a ``strength`` share of samples comes from far off the
  manifold (precision falls);
* ``"noise"``: isotropic noise of ``strength`` × the feature scale added
  after the ReLU (both fall).

Example:
    >>> from eprmetrics.synthetic import make_pair
    >>> real, fake = make_pair(200, 100, dim=32, defect="mode_drop", strength=0.5)
    >>> tuple(real.shape), tuple(fake.shape), bool((real >= 0).all())
    ((200, 32), (100, 32), True)
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union, overload

import numpy as np
import torch

__all__ = ["SyntheticSpec", "DEFECTS", "SPECTRA", "generate", "make_pair", "write_npy"]

CHUNK = 4096
SPECTRA = ("low", "long", "heavy")
# The "heavy" family: latent dimensions, Student-t degrees of freedom of the mixture's components, the share of
# the pre-activation variance carried by the network's 64 output directions (the rest is full-rank noise).
HEAVY_LATENT = 64
HEAVY_DOF = 3
HEAVY_SIGNAL = 0.88
DEFECTS = ("none", "mode_drop", "truncation", "outliers", "noise")
_REAL, _FAKE = 0, 1


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic "feature extractor" and data distribution.

    The defaults were chosen by measuring k-occurrence at k = 3 (see README):
    about 70% of samples have N₃ ≥ 1 and 35–40% have N₃ ≥ 3, as for VGG-16
    features of FFHQ in the thesis (72% / 38%).
    """

    dim: int = 4096
    latent: int = 32
    n_modes: int = 32
    mode_spread: float = 1.6  # distance scale between mode centres, in units of the within-mode std
    bias: float = -0.5  # ReLU offset (in units of the pre-activation std): sparsity
    seed: int = 0
    # "low": a ``latent``-dimensional manifold (low intrinsic dimension). "long": a latent space as wide as
    # the features whose i-th direction has variance ∝ i^-0.8, like real embeddings. Measured on 6,000 ReLU
    # features: 64 / 128 principal directions hold 74% / 82% of the variance at d = 512 and 68% / 72% at
    # d = 2048 ("low": 84% / 91% and 81% / 86%); sentence embeddings: ~68% / ~84%.
    # "heavy": data the generator was not fitted to, like VGG fc2 features of real images — a mixture of
    # Student-t components (3 degrees of freedom, per-mode scales) in 64 latent dimensions, pushed through a
    # random residual tanh layer, mapped to the features, plus full-rank anisotropic noise, then ReLU. About
    # two thirds of the variance lies in 64 directions (tests/test_synthetic_profiling.py measures the band),
    # and the tails put a few points far from everything (huge k-NN radii).
    spectrum: str = "low"

    def __post_init__(self) -> None:
        if self.spectrum not in SPECTRA:
            raise ValueError(
                f"spectrum: expected one of {SPECTRA}, got {self.spectrum!r}; 'long' is like real embeddings, "
                "'heavy' like CNN features of real images (heavy tails, full-rank noise)"
            )

    @property
    def latent_dim(self) -> int:
        return {"long": self.dim, "heavy": HEAVY_LATENT}.get(self.spectrum, self.latent)


def _gen(seed: int, *salt: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, *salt]).generate_state(1, np.uint64)[0] >> 1))
    return g


class _Model:
    def __init__(self, spec: SyntheticSpec, device: torch.device) -> None:
        g = _gen(spec.seed, 99, device=device)
        self.spec = spec
        latent = spec.latent_dim
        if spec.spectrum in ("long", "heavy"):  # direction i of the latent space carries variance ∝ i^-0.8
            sigma = torch.arange(1, latent + 1, device=device, dtype=torch.float32) ** -0.4
            sigma = sigma / sigma.pow(2).sum().sqrt()
        else:
            sigma = torch.full((latent,), latent**-0.5, device=device)
        self.W = torch.randn(latent, spec.dim, generator=g, device=device) * sigma[:, None]
        self.centers = torch.randn(spec.n_modes, latent, generator=g, device=device) * spec.mode_spread
        # Unequal mode sizes (Zipf-like), as real datasets have.
        w = 1.0 / torch.arange(1, spec.n_modes + 1, device=device, dtype=torch.float32) ** 0.5
        self.weights = w / w.sum()
        self.scale = float((1 + spec.mode_spread**2) ** 0.5)  # std of a pre-activation
        self.heavy: Optional[_Heavy] = None
        if spec.spectrum == "heavy":
            self.heavy = _Heavy(self, g)

    def latents(self, n: int, g: torch.Generator, modes: int) -> torch.Tensor:
        dev = self.W.device
        weights = self.weights[:modes] / self.weights[:modes].sum()
        m = torch.multinomial(weights, n, replacement=True, generator=g)
        noise = torch.randn(n, self.spec.latent_dim, generator=g, device=dev)
        if self.heavy is not None:  # Student-t components: a normal over √(χ²_ν / ν), per-mode scales
            chi2 = torch.randn(n, HEAVY_DOF, generator=g, device=dev).pow(2).sum(1, keepdim=True)
            noise = noise * (HEAVY_DOF / chi2).sqrt() * self.heavy.mode_scale[m, None]
        return self.centers[m] + noise

    def features(self, z: torch.Tensor, g: Optional[torch.Generator] = None) -> torch.Tensor:
        """Features of the latents ``z``; the "heavy" family draws its noise from ``g`` (:data:`CHUNK` rows,
        the first ``len(z)`` used: a chunk's rows do not depend on how many of them are asked for)."""
        if self.heavy is None:
            return torch.relu(z @ self.W + self.spec.bias * self.scale)
        assert g is not None and z.shape[0] <= CHUNK
        noise = torch.randn(CHUNK, self.spec.dim, generator=g, device=z.device)[: z.shape[0]]
        return self.heavy.features(z, noise)


class _Heavy:
    """The "heavy" family's network: ``x = relu(gain · (√s · ŝ(z) + √(1 − s) · a ⊙ ε) + bias · gain · std)``,
    ``ŝ(z)`` the per-feature standardised ``(z + c·tanh(z A / c)) W`` (64 directions), ``ε`` standard normal
    noise with a per-feature power-law standard deviation ``a`` (full rank, anisotropic), random gains."""

    def __init__(self, model: _Model, g: torch.Generator) -> None:
        spec, dev = model.spec, model.W.device
        latent = spec.latent_dim
        self.mode_scale = torch.exp(0.4 * torch.randn(spec.n_modes, generator=g, device=dev))
        self.A = torch.randn(latent, latent, generator=g, device=dev) * latent**-0.5
        self.c = float((spec.mode_spread**2 + HEAVY_DOF / (HEAVY_DOF - 2)) ** 0.5)  # std of a latent coordinate
        self.W = model.W
        # Noise standard deviations: a power law over the features (variance ∝ i^-0.5, mean 1), in random order.
        var = torch.arange(1, spec.dim + 1, device=dev, dtype=torch.float32) ** -0.5
        self.noise_std = (var / var.mean()).sqrt()[torch.randperm(spec.dim, generator=g, device=dev)]
        self.gain = torch.exp(0.3 * torch.randn(spec.dim, generator=g, device=dev))
        model.heavy = self  # the pilot's latents are the family's (Student-t, scaled per mode)
        pilot = model.latents(CHUNK, g, spec.n_modes)
        self.signal_std = self._signal(pilot).std(0).clamp_min(1e-6)
        total = (HEAVY_SIGNAL + (1 - HEAVY_SIGNAL) * self.noise_std.pow(2)).sqrt()
        self.offset = spec.bias * self.gain * total

    def _signal(self, z: torch.Tensor) -> torch.Tensor:
        return (z + self.c * torch.tanh(z @ self.A / self.c)) @ self.W

    def features(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self._signal(z).div_(self.signal_std).mul_(HEAVY_SIGNAL**0.5)
        x.add_(noise * self.noise_std * (1 - HEAVY_SIGNAL) ** 0.5)
        return torch.relu(x.mul_(self.gain).add_(self.offset))


@overload
def generate(
    n: int,
    spec: SyntheticSpec = ...,
    *,
    defect: str = ...,
    strength: float = ...,
    stream: int = ...,
    device: Union[str, torch.device] = ...,
    dtype: torch.dtype = ...,
    start: int = ...,
    out: Optional[torch.Tensor] = ...,
) -> torch.Tensor: ...


@overload
def generate(
    n: int,
    spec: SyntheticSpec = ...,
    *,
    defect: str = ...,
    strength: float = ...,
    stream: int = ...,
    device: Union[str, torch.device] = ...,
    dtype: torch.dtype = ...,
    start: int = ...,
    out: np.ndarray,
) -> np.ndarray: ...


def generate(
    n: int,
    spec: SyntheticSpec = SyntheticSpec(),
    *,
    defect: str = "none",
    strength: float = 0.0,
    stream: int = _REAL,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float32,
    start: int = 0,
    out: Optional[Union[np.ndarray, torch.Tensor]] = None,
) -> Union[np.ndarray, torch.Tensor]:
    """Rows ``start .. start+n`` of a synthetic set (``stream`` 0 = real, 1 = fake).

    Args:
        n: number of rows.
        spec: the synthetic distribution.
        defect: one of :data:`DEFECTS`; ``strength`` in [0, 1] sets its size.
        stream: independent sample streams of the same distribution.
        device: where to generate.
        dtype: output dtype.
        start: first row; must be a multiple of :data:`CHUNK` (for chunked writers).
        out: optional preallocated (numpy memmap or tensor) destination of n rows.

    Returns:
        ``out`` if given, else an n × dim tensor on ``device``.
    """
    if defect not in DEFECTS:
        raise ValueError(f"defect: expected one of {DEFECTS}, got {defect!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength: expected a value in [0, 1], got {strength!r}")
    if start % CHUNK:
        raise ValueError(f"start: expected a multiple of {CHUNK}, got {start}")
    device = torch.device(device)
    model = _Model(spec, device)
    modes = spec.n_modes
    if defect == "mode_drop":
        modes = max(1, int(round(spec.n_modes * (1.0 - strength))))
    result = out if out is not None else torch.empty(n, spec.dim, dtype=dtype, device=device)
    for c0 in range(start, start + n, CHUNK):
        rows = min(CHUNK, start + n - c0)
        g = _gen(spec.seed, stream, c0 // CHUNK, device=device)
        z = model.latents(CHUNK, g, modes)[:rows]
        if defect == "truncation":
            z = model.centers.T @ model.weights + (1.0 - strength) * (z - model.centers.T @ model.weights)
        x = model.features(z, g)
        if defect == "outliers":
            far = torch.rand(CHUNK, generator=g, device=device)[:rows] < strength
            z_far = torch.randn(rows, spec.latent_dim, generator=g, device=device) * (3.0 * model.scale)
            x = torch.where(far[:, None], model.features(z_far, g), x)
        elif defect == "noise":
            x = x + strength * model.scale * torch.randn(x.shape, generator=g, device=device)
        block = x.to(dtype)
        i0 = c0 - start
        if isinstance(result, np.ndarray):
            result[i0 : i0 + rows] = block.cpu().numpy()
        else:
            result[i0 : i0 + rows] = block
    return result


def make_pair(
    n_real: int,
    n_fake: int,
    *,
    dim: int = 4096,
    defect: str = "none",
    strength: float = 0.0,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    spec: Optional[SyntheticSpec] = None,
    spectrum: str = "low",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A real set and a fake set with the chosen defect, as float32 tensors (``spectrum``: :class:`SyntheticSpec`)."""
    spec = spec or SyntheticSpec(dim=dim, seed=seed, spectrum=spectrum)
    real = generate(n_real, spec, stream=_REAL, device=device)
    fake = generate(n_fake, spec, defect=defect, strength=strength, stream=_FAKE, device=device)
    return real, fake


def write_npy(
    path: str,
    n: int,
    spec: SyntheticSpec = SyntheticSpec(),
    *,
    defect: str = "none",
    strength: float = 0.0,
    stream: int = _REAL,
    dtype: str = "float32",
    device: Union[str, torch.device] = "cpu",
) -> np.ndarray:
    """Write a synthetic set straight into a ``.npy`` memory map, chunk by chunk; returns the map."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, spec.dim))
    torch_dtype = getattr(torch, dtype)
    for c0 in range(0, n, 16 * CHUNK):
        rows = min(16 * CHUNK, n - c0)
        generate(
            rows,
            spec,
            defect=defect,
            strength=strength,
            stream=stream,
            device=device,
            dtype=torch_dtype,
            start=c0,
            out=mm[c0 : c0 + rows],
        )
    mm.flush()
    return mm
