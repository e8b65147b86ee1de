"""Pieces shared by the model families (families never import each other)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from zuko.distributions import DiagNormal
from zuko.flows import Flow, GeneralCouplingTransform, MaskedAutoregressiveTransform, UnconditionalDistribution
from zuko.transforms import MonotonicRQSTransform


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
                features, context, order=order, univariate=MonotonicRQSTransform, shapes=spline_shapes(bins),
                hidden_features=(hidden, hidden),
            )
        )  # fmt: skip
    return _float_hypers(Flow(layers, _base(features)))


def coupling_spline_flow(features: int, context: int, transforms: int, hidden: int, bins: int, seed: int = 0) -> Flow:
    """Coupling flow with rational-quadratic splines (as CaloINN, arXiv:2312.09290): one pass each way.

    Each transform splines a random half of the features given the other half and the context.
    ``bins = 0`` gives affine couplings instead (RealNVP, Dinh et al., arXiv:1605.08803): far fewer
    element-wise operations per feature, which is what bounds speed for thousands of voxels on a CPU.
    """
    univariate = {} if bins == 0 else {"univariate": MonotonicRQSTransform, "shapes": spline_shapes(bins)}
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(transforms):
        mask = torch.zeros(features, dtype=torch.bool)
        mask[torch.randperm(features, generator=generator)[: features // 2]] = True
        layers.append(
            GeneralCouplingTransform(features, context, mask=mask, hidden_features=(hidden, hidden), **univariate)
        )  # fmt: skip
    return _float_hypers(Flow(layers, _base(features)))


def flow_log_prob(flow: Flow, x: Tensor, context: Tensor) -> Tensor:
    """``log p(x | context)`` per row, in float32."""
    return flow(context).log_prob(x.float())


def flow_sample(flow: Flow, context: Tensor) -> Tensor:
    """One sample per context row, float32."""
    return flow(context).sample().float()


__all__ = [
    "FloatOutput",
    "autoregressive_spline_flow",
    "coupling_spline_flow",
    "flow_log_prob",
    "flow_sample",
    "spline_shapes",
]
