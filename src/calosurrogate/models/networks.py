"""Pieces shared by the model families (families never import each other)."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zuko.distributions import DiagNormal
from zuko.flows import Flow, GeneralCouplingTransform, MaskedAutoregressiveTransform, UnconditionalDistribution
from zuko.nn import MaskedMLP
from zuko.transforms import MonotonicRQSTransform, Transform

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.layers import CylindricalConv3d


class FloatOutput(nn.Module):
    """Run a network (under autocast, if active) and hand its output on in float32.

    Spline parameters, bin searches and log-determinants stay in float32 when the
    matrix products run in bf16/fp16: the flows' numerically delicate part keeps full precision.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).float()


def _float_hypers(flow: nn.Module) -> nn.Module:
    for module in flow.modules():
        hyper = getattr(module, "hyper", None)
        if isinstance(hyper, nn.Module) and not isinstance(hyper, FloatOutput):
            module.hyper = FloatOutput(hyper)
    return flow


def _base(features: int) -> UnconditionalDistribution:
    return UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)


def _small_softmax(x: Tensor) -> Tensor:
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


class SplineTransform(MonotonicRQSTransform):
    """zuko's monotonic rational-quadratic spline (Durkan et al., arXiv:1906.04032), same maths.

    Only the bin softmax is written out: PyTorch's CPU softmax kernel is about five times slower
    than ``exp / sum`` over a last dimension of a few bins, and it was a third of a flow's training
    step on ds1-photons.

    Args:
        widths, heights: Unconstrained bin widths and heights, ``(*, K)``.
        derivatives: Unconstrained inner knot derivatives, ``(*, K - 1)``.
        bound: Half-width of the spline's (co)domain; identity outside.
        slope: Smallest slope.
    """

    def __init__(
        self, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0, slope: float = 1e-3, **kwargs
    ) -> None:
        Transform.__init__(self, **kwargs)
        log_slope = math.log(slope)
        widths = widths / (1 + abs(2 * widths / log_slope))
        heights = heights / (1 + abs(2 * heights / log_slope))
        derivatives = derivatives / (1 + abs(derivatives / log_slope))
        widths = F.pad(_small_softmax(widths), (1, 0), value=0)
        heights = F.pad(_small_softmax(heights), (1, 0), value=0)
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(F.pad(derivatives, (1, 1), value=0))


def spline_shapes(bins: int) -> tuple[tuple[int], tuple[int], tuple[int]]:
    """Parameter shapes of one monotonic rational-quadratic spline (widths, heights, inner derivatives)."""
    return ((bins,), (bins,), (bins - 1,))


def autoregressive_spline_flow(
    features: int, context: int, transforms: int, hidden: int, bins: int, seed: int = 0
) -> Flow:
    """Masked autoregressive flow with rational-quadratic splines (MAF-RQS; Durkan et al., arXiv:1906.04032).

    Exact density in one pass; sampling takes ``features`` network passes (use for small ``features``).
    """
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for k in range(transforms):
        order = torch.randperm(features, generator=generator) if k else torch.arange(features)
        layers.append(
            MaskedAutoregressiveTransform(
                features, context, order=order, univariate=SplineTransform, shapes=spline_shapes(bins),
                hidden_features=(hidden, hidden),
            )
        )  # fmt: skip
    return _float_hypers(Flow(layers, _base(features)))


def coupling_spline_flow(features: int, context: int, transforms: int, hidden: int, bins: int, seed: int = 0) -> Flow:
    """Coupling flow with rational-quadratic splines (as CaloINN, arXiv:2312.09290): one pass each way.

    Each transform splines half of the features given the other half and the context. The halves
    come in complementary pairs (a random half, then the rest), so every feature is transformed
    ``transforms // 2`` times or more. Independent random halves left some features never
    transformed (1 in 64 for 6 transforms: 5 of dataset 1's 368 voxels).
    ``bins = 0`` gives affine couplings instead (RealNVP, Dinh et al., arXiv:1605.08803): far fewer
    element-wise operations per feature, which is what bounds speed for thousands of voxels on a CPU.
    """
    univariate = {} if bins == 0 else {"univariate": SplineTransform, "shapes": spline_shapes(bins)}
    generator = torch.Generator().manual_seed(seed)
    layers = []
    half = torch.zeros(features, dtype=torch.bool)
    for k in range(transforms):
        if k % 2 == 0:
            half = torch.zeros(features, dtype=torch.bool)
            half[torch.randperm(features, generator=generator)[: features // 2]] = True
        mask = ~half if k % 2 else half
        layers.append(
            GeneralCouplingTransform(features, context, mask=mask, hidden_features=(hidden, hidden), **univariate)
        )  # fmt: skip
    return _float_hypers(Flow(layers, _base(features)))


def flow_log_prob(flow: Flow, x: Tensor, context: Tensor) -> Tensor:
    """``log p(x | context)`` per row, in float32."""
    return flow(context).log_prob(x.float())


def flow_from_noise(flow: Flow, context: Tensor, noise: Tensor) -> Tensor:
    """The sample a flow makes from given base noise ``(N, D)`` (standard normal), float32."""
    return flow(context).transform.inv(noise.float()).float()


def mlp(
    in_features: int,
    out_features: int,
    hidden: int,
    n_hidden_layers: int,
    spectral_norm: bool = False,
    activation: type[nn.Module] = nn.SiLU,
    final_bias: bool = True,
) -> nn.Sequential:
    """Fully connected network ``in -> hidden x n_hidden_layers -> out``.

    ``spectral_norm`` constrains every linear map's largest singular value to 1 (Miyato et al.,
    arXiv:1802.05957), the usual Lipschitz aid for GAN critics. ``final_bias=False`` drops the
    output bias where only differences of outputs matter (a Wasserstein critic).
    """
    sizes = [in_features] + [hidden] * n_hidden_layers + [out_features]
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(a, b, bias=final_bias or k < len(sizes) - 2)
        layers.append(nn.utils.parametrizations.spectral_norm(linear) if spectral_norm else linear)
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class AutoregressiveBernoulli(nn.Module):
    """Conditional distribution of ``D`` binary flags, one factor per flag given the earlier ones.

    ``p(b | c) = prod_i Bernoulli(b_i | sigmoid(f_i(b_{<i}, c)))`` with all ``f_i`` in one masked
    network (MADE, Germain et al., arXiv:1502.03509): exact likelihood in one pass, sampling in
    ``D`` passes. Used for which calorimeter layers hold energy: empty layers come in runs (the
    shower's end, a first layer the shower skipped), so the flags are strongly correlated.

    Args:
        features: Number of flags ``D``.
        context: Number of conditioning features.
        hidden: Widths of the hidden layers.
    """

    def __init__(self, features: int, context: int, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        earlier = torch.ones(features, features, dtype=torch.bool).tril(-1)
        adjacency = torch.cat([earlier, torch.ones(features, context, dtype=torch.bool)], dim=1)
        self.features = features
        self.net = MaskedMLP(adjacency, hidden, activation=nn.ELU)

    def logits(self, flags: Tensor, context: Tensor) -> Tensor:
        """``(N, D)`` logit of each flag given the earlier ones (flags 0/1, ``(N, D)``)."""
        return self.net(torch.cat([flags.float(), context.float()], dim=1))

    def log_prob(self, flags: Tensor, context: Tensor) -> Tensor:
        """``log p(flags | context)`` per row, ``(N,)``."""
        logits = self.logits(flags, context)
        return -F.binary_cross_entropy_with_logits(logits, flags.float(), reduction="none").sum(1)

    def sample_from_uniform(self, context: Tensor, uniform: Tensor) -> Tensor:
        """Flags ``(N, D)`` (0./1.) drawn with the given uniform numbers ``(N, D)``, flag by flag."""
        flags = torch.zeros(context.shape[0], self.features, device=context.device)
        eye = torch.eye(self.features, device=context.device)
        for i in range(self.features):  # flag i depends on flags < i only: earlier draws stay valid
            bit = (uniform[:, i] < torch.sigmoid(self.logits(flags, context)[:, i])).float()
            flags = flags + bit[:, None] * eye[i]
        return flags


class CylindricalConvNet(nn.Module):
    """A stack of cylindrical convolutions with SiLU between them; a condition vector enters
    every block as extra constant channels (the usual way to condition a small conv net).

    Shapes: ``(N, C_in, L, A, R)`` and conditions ``(N, K)`` -> ``(N, C_out, L, A, R)``.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int, blocks: int, n_conditions: int) -> None:
        super().__init__()
        sizes = [in_channels] + [channels] * blocks
        self.blocks = nn.ModuleList(CylindricalConv3d(a + n_conditions, b) for a, b in itertools.pairwise(sizes))
        self.out = CylindricalConv3d(channels + n_conditions, out_channels, 1)

    def forward(self, x: Tensor, conditions: Tensor) -> Tensor:
        def with_conditions(h: Tensor) -> Tensor:
            c = conditions.to(h.dtype)[:, :, None, None, None].expand(-1, -1, *h.shape[2:])
            return torch.cat([h, c], dim=1)

        for block in self.blocks:
            x = F.silu(block(with_conditions(x)))
        return self.out(with_conditions(x))


def _image_shape(geometry: CylindricalGeometry, conv: tuple[int, int] | None) -> tuple[int, int, int] | None:
    if conv is None:
        return None
    if not geometry.is_regular:
        raise ValueError(
            f"convolutions need a regular geometry (the same alpha x r binning in every layer); {geometry.name!r} "
            "is irregular: use the MLP architecture"
        )
    return geometry.shape


class ShowerEncoder(nn.Module):
    """Coded showers ``(N, V)`` and mapped conditions ``(N, K)`` -> features ``(N, out)``.

    An MLP, or with ``conv = (channels, blocks)`` a :class:`CylindricalConvNet` in front of a
    one-hidden-layer MLP (regular geometries only).
    """

    def __init__(self, geometry: CylindricalGeometry, n_conditions: int, out_features: int, hidden: int,
                 layers: int, conv: tuple[int, int] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.image_shape = _image_shape(geometry, conv)
        self.conv = None if conv is None else CylindricalConvNet(1, 1, conv[0], conv[1], n_conditions)
        self.net = mlp(geometry.n_voxels + n_conditions, out_features, hidden, layers if conv is None else 1)

    def forward(self, codes: Tensor, conditions: Tensor) -> Tensor:
        if self.conv is not None:
            codes = self.conv(codes.reshape(-1, 1, *self.image_shape), conditions).flatten(1)
        return self.net(torch.cat([codes, conditions.to(codes.dtype)], dim=1))


class ShowerDecoder(nn.Module):
    """Latents ``(N, Z)`` and mapped conditions ``(N, K)`` -> per-voxel parameters ``(N, V, P)``, float32.

    An MLP, or with ``conv = (channels, blocks)`` a one-hidden-layer MLP to ``channels`` images
    refined by a :class:`CylindricalConvNet`.
    """

    def __init__(self, geometry: CylindricalGeometry, n_conditions: int, latent: int, n_params: int, hidden: int,
                 layers: int, conv: tuple[int, int] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.n_params = n_params
        self.image_shape = _image_shape(geometry, conv)
        if conv is None:
            self.net = mlp(latent + n_conditions, geometry.n_voxels * n_params, hidden, layers)
            self.conv = None
        else:
            self.channels = conv[0]
            self.net = mlp(latent + n_conditions, geometry.n_voxels * conv[0], hidden, 1)
            self.conv = CylindricalConvNet(conv[0], n_params, conv[0], conv[1], n_conditions)

    def forward(self, latents: Tensor, conditions: Tensor) -> Tensor:
        h = self.net(torch.cat([latents, conditions.to(latents.dtype)], dim=1))
        if self.conv is None:
            return h.float().unflatten(1, (-1, self.n_params))
        h = self.conv(h.unflatten(1, (self.channels, *self.image_shape)), conditions)
        return h.float().flatten(2).transpose(1, 2)


class LogEnergyCoding(nn.Module):
    """Voxel energies (MeV) -> log codes of the energy fraction ``E / E_inc``, standardised per voxel.

    Two codings; in both the incident energy only rescales what the network sees:

    - all voxels (``hits_only=False``): ``log(1 + (E / E_inc) / delta)`` with ``delta = cut /
      (GAP max(E_inc))`` of the training data, and voxels below the cut coded as empty. Empty
      voxels map to 0 at every energy and the smallest hit at the highest energy to
      ``log(1 + GAP)``, so a gap of at least that width separates the two: networks that output
      every voxel (GAN generators, denoisers) only have to keep empty voxels below it, and the
      sampling cut in MeV restores exact zeros. Without the gap, sub-cut values lie just below
      the first hit code and small network errors turn them into thousands of faint hits.
    - hit voxels only (``hits_only=True``): ``log(E / E_inc)`` of voxels with ``E >= cut``, for
      models that decide hit / no hit separately (:class:`HurdleLikelihood`).

    ``scale_on_hits`` standardises the all-voxel coding with the mean and spread of each voxel's
    hits alone. Otherwise a voxel that is sometimes empty gets a spread dominated by the gap
    between empty and hit, and a unit of code is a factor of tens in energy: a network error
    that would be small in code wrecks the energies of the hits. With it, a unit of code is the
    natural spread of the hits and empty voxels sit far below.
    """

    GAP = 10.0

    def __init__(self, n_voxels: int, cut_mev: float, hits_only: bool = False, scale_on_hits: bool = False) -> None:
        super().__init__()
        self.cut_mev = float(cut_mev)
        self.hits_only = hits_only
        self.scale_on_hits = scale_on_hits
        self.register_buffer("mean", torch.zeros(n_voxels))
        self.register_buffer("std", torch.ones(n_voxels))
        self.register_buffer("max_raw", torch.tensor(30.0))
        self.register_buffer("delta", torch.tensor(1e-6))

    def raw(self, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """Codes before standardisation; ``showers (N, V)`` MeV, ``incident_energies (N, 1)`` MeV."""
        showers, incident = showers.float(), incident_energies.float().reshape(-1, 1)
        if self.hits_only:
            return torch.log(showers.clamp_min(self.cut_mev) / incident)
        visible = torch.where(showers >= self.cut_mev, showers, torch.zeros_like(showers))
        return torch.log1p(visible / (incident * self.delta))

    @torch.no_grad()
    def fit(self, showers: Tensor, incident_energies: Tensor) -> LogEnergyCoding:
        """Per-voxel mean and standard deviation from training showers (all voxels, or hits only)."""
        self.delta.fill_(self.cut_mev / (self.GAP * float(incident_energies.max())))
        y = self.raw(showers, incident_energies).double()
        on_hits = self.hits_only or self.scale_on_hits
        weight = (showers >= self.cut_mev).double() if on_hits else torch.ones_like(y)
        count = weight.sum(0)
        mean = (y * weight).sum(0) / count.clamp_min(1)
        var = ((y - mean) ** 2 * weight).sum(0) / (count - 1).clamp_min(1)
        enough = count >= 2
        self.mean.copy_(torch.where(enough, mean, (y * weight).sum() / weight.sum().clamp_min(1)).float())
        std = torch.where(enough & (var > 1e-12), var.sqrt(), torch.ones_like(var))
        if self.scale_on_hits and not self.hits_only:
            # A voxel hit in only a few showers has no trustworthy spread; half a unit of log
            # energy keeps its empty code within reach of the network.
            std = std.clamp_min(0.5)
        self.std.copy_(std.float())
        # Decoded energies are capped at twice the largest training voxel: an untrained or
        # diverging network cannot produce astronomically large showers.
        self.max_raw.fill_(float((y * weight).max()) + math.log(2.0))
        return self

    def forward(self, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """Showers ``(N, V)`` MeV -> standardised codes ``(N, V)``."""
        return (self.raw(showers, incident_energies) - self.mean) / self.std

    def unstandardise(self, codes: Tensor) -> Tensor:
        """Standardised codes -> raw log codes (:meth:`raw`), unclipped: below 0 means "empty"."""
        return codes.float() * self.std + self.mean

    def inverse(self, codes: Tensor, incident_energies: Tensor) -> Tensor:
        """Standardised codes -> showers in MeV (non-negative)."""
        y = self.unstandardise(codes)
        incident = incident_energies.float().reshape(-1, 1)
        # Tensor bounds, not Python floats: keeps the graph free of data-dependent values (export).
        if self.hits_only:
            return incident * torch.exp(torch.minimum(y, self.max_raw.clamp(max=0.0)))
        return incident * self.delta * torch.expm1(torch.minimum(y.clamp_min(0.0), self.max_raw))


class HurdleLikelihood(nn.Module):
    """Likelihood for sparse voxel energies: a Bernoulli "is the voxel hit" times a Gaussian on
    the hit voxels' standardised ``log(E / E_inc)`` (a hurdle model, as in zero-inflated regression).

    Zeros are a large, exact fraction of calorimeter voxels; one Gaussian in any continuous
    coding smears them out. A decoder instead predicts three numbers per voxel: the hit logit
    and the mean and log-width of the code given a hit (:class:`LogEnergyCoding`, hits only).
    Shapes: ``params (N, V, 3)``, showers ``(N, V)`` MeV.
    """

    n_params = 3

    def __init__(self, coding: LogEnergyCoding) -> None:
        super().__init__()
        self.coding = coding

    def log_prob(self, params: Tensor, showers: Tensor, incident_energies: Tensor) -> Tensor:
        """``log p(showers | params)`` per shower ``(N,)``."""
        params = params.float()
        logit, mu, log_sigma = params.unbind(-1)
        log_sigma = log_sigma.clamp(-5.0, 3.0)
        hit = (showers >= self.coding.cut_mev).float()
        bernoulli = -F.binary_cross_entropy_with_logits(logit, hit, reduction="none")
        y = self.coding(showers, incident_energies)
        gauss = -0.5 * ((y - mu) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return (bernoulli + hit * gauss).sum(-1)

    def sample(
        self, params: Tensor, incident_energies: Tensor, uniform: Tensor | None = None, normal: Tensor | None = None
    ) -> Tensor:
        """Draw showers ``(N, V)`` MeV: hits from the Bernoulli, energies >= the cut from the Gaussian.

        ``uniform`` and ``normal`` (``(N, V)`` each) are the random numbers to use; drawn here if None.
        """
        params = params.float()
        logit, mu, log_sigma = params.unbind(-1)
        uniform = torch.rand_like(logit) if uniform is None else uniform
        normal = torch.randn_like(mu) if normal is None else normal
        hit = uniform < torch.sigmoid(logit)
        y = mu + log_sigma.clamp(-5.0, 3.0).exp() * normal
        energy = self.coding.inverse(y, incident_energies).clamp_min(self.coding.cut_mev)
        return torch.where(hit, energy, torch.zeros_like(energy))


__all__ = [
    "AutoregressiveBernoulli",
    "CylindricalConv3d",
    "CylindricalConvNet",
    "FloatOutput",
    "HurdleLikelihood",
    "LogEnergyCoding",
    "ShowerDecoder",
    "ShowerEncoder",
    "autoregressive_spline_flow",
    "coupling_spline_flow",
    "flow_from_noise",
    "flow_log_prob",
    "mlp",
    "spline_shapes",
]
