"""Which layers of a shower hold energy: an autoregressive Bernoulli over the layers (MADE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from zuko.nn import MaskedMLP


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
