"""A shower as layer energies and normalised layer shapes (:class:`LayerDecomposition`), the first
stage that generates the layer energies (:class:`LayerEnergyStage`, CaloFlow's flow I) and the
library of faint layers (:class:`FaintLayerLibrary`): what the two-stage families share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from calosurrogate.data.transforms import Logit, Standardize
from calosurrogate.models.components.flows import coupling_spline_flow, flow_from_noise, flow_log_prob
from calosurrogate.models.components.occupancy import AutoregressiveBernoulli


class LayerDecomposition(nn.Module):
    """CaloFlow's split of a shower into layer energies and normalised per-layer shapes.

    Krause and Shih, "CaloFlow", arXiv:2106.05285: flow I learns the layer energies, flow II
    the shapes (each layer's voxels divided by the layer energy). Layer energies are coded as
    ``u_0 = E_sum / (scale E_inc)`` and ``u_i = E_i / sum_{j >= i} E_j``, all in ``[0, 1]``,
    which keeps sampled energies positive and their sum bounded.

    Args:
        layer_offsets: Voxel index of each layer's start plus the total, ``(L + 1,)``.
        scale: Largest ``E_sum / E_inc`` the code can represent.
    """

    def __init__(self, layer_offsets: list[int], scale: float = 1.5) -> None:
        super().__init__()
        offsets = torch.as_tensor(layer_offsets, dtype=torch.long)
        self.register_buffer("offsets", offsets)
        self.register_buffer(
            "voxel_layer", torch.repeat_interleave(torch.arange(len(offsets) - 1), torch.diff(offsets))
        )
        self.n_layers = len(offsets) - 1
        sizes = torch.diff(offsets)
        # Layers of one size (ds2, ds3) allow views in place of index gathers and scatters,
        # several times faster on a CPU for the (N, V) tensors of a sampling batch.
        self.layer_size = int(sizes[0]) if bool((sizes == sizes[0]).all()) else None
        self.scale = scale

    def layer_energies(self, showers: Tensor) -> Tensor:
        """``(N, V) -> (N, L)`` energy per layer."""
        if self.layer_size is not None:
            return showers.reshape(showers.shape[0], self.n_layers, self.layer_size).sum(2)
        out = torch.zeros(showers.shape[0], self.n_layers, dtype=showers.dtype, device=showers.device)
        return out.index_add_(1, self.voxel_layer, showers)

    def per_voxel(self, values: Tensor) -> Tensor:
        """``(N, L) -> (N, V)``: each layer's value repeated over its voxels."""
        if self.layer_size is not None:
            n = values.shape[0]
            return values[:, :, None].expand(n, self.n_layers, self.layer_size).reshape(n, -1)
        return values.index_select(1, self.voxel_layer)

    def shapes(self, showers: Tensor, layer_energies: Tensor) -> Tensor:
        """Voxels divided by their layer's energy (0 where the layer is empty)."""
        per_voxel = self.per_voxel(layer_energies)
        return torch.where(per_voxel > 0, showers / per_voxel.clamp_min(1e-30), torch.zeros_like(showers))

    def encode_energies(self, layer_energies: Tensor, incident_energies: Tensor) -> Tensor:
        """Layer energies -> ``u`` in ``[0, 1]^L`` (see class docstring)."""
        remaining = layer_energies.flip(1).cumsum(1).flip(1)  # sum_{j >= i} E_j
        total = remaining[:, :1]
        u0 = (total / (self.scale * incident_energies.reshape(-1, 1))).clamp(0.0, 1.0)
        ratios = torch.where(
            remaining[:, :-1] > 0,
            layer_energies[:, :-1] / remaining[:, :-1].clamp_min(1e-30),
            torch.zeros_like(remaining[:, :-1]),
        )
        return torch.cat([u0, ratios.clamp(0.0, 1.0)], dim=1)

    def determined_codes(self, occupied: Tensor) -> tuple[Tensor, Tensor]:
        """The entries of ``u`` that the set of occupied (non-empty) layers fixes, and their values.

        Given which layers hold energy, ``u_{i+1} = E_i / sum_{j >= i} E_j`` is exactly 0 for an
        empty layer and exactly 1 for the last occupied one; ``u_0`` is 0 when no layer is
        occupied. Only the other entries carry information. A continuous density over ``u``
        smears these point masses (deep layers with a trace of energy instead of none); a
        model told the occupancy learns the free entries only.

        Args:
            occupied: ``(N, L)``, nonzero where a layer holds energy.

        Returns:
            ``fixed`` ``(N, L)`` bool and ``values`` ``(N, L)`` (0 or 1, meaningful where fixed).
        """
        occupied = occupied.bool()
        later = occupied.flip(1).cumsum(1).flip(1)[:, 1:] > 0  # some layer j > i is occupied, i < L - 1
        head = occupied[:, :-1]
        fixed = torch.cat([~occupied.any(1, keepdim=True), ~(head & later)], dim=1)
        values = torch.cat([torch.zeros_like(occupied[:, :1]), head & ~later], dim=1)
        return fixed, values.to(torch.get_default_dtype())

    def decode_energies(self, u: Tensor, incident_energies: Tensor) -> Tensor:
        """``u`` -> layer energies (MeV), non-negative."""
        remaining = u[:, 0] * self.scale * incident_energies.reshape(-1)
        energies = []
        for i in range(1, self.n_layers):
            e = u[:, i] * remaining
            energies.append(e)
            remaining = remaining - e
        energies.append(remaining)
        return torch.stack(energies, dim=1).clamp_min(0.0)

    def compose(
        self,
        layer_energies: Tensor,
        shapes: Tensor,
        cut: Tensor | float | None = None,
        preference: Tensor | None = None,
        fill: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Shapes (renormalised to sum 1 per layer) times layer energies -> voxels (MeV).

        With ``cut`` the composition keeps the layer energies through the energy cut: voxels the
        scaling leaves below the cut are dropped and the rest rescaled to the layer's energy
        (which only raises them). A layer with energy but no voxel left (a first stage that says
        "a faint hit here" beside a shape model that says "empty") takes the pattern ``fill``
        gives it, through the cut in the same way; a layer still empty then puts all its energy
        into one voxel, the one ``fill``'s pattern, else ``preference``, ranks highest (default:
        the shape itself). A layer whose energy is below the cut is left empty. A plain
        composition followed by the cut loses those layers (on ds2 several per cent of the
        occupied ones, mostly faint deep layers), and their log energy is a classifier input.

        Args:
            layer_energies: ``(N, L)`` MeV, as the first stage counts them (voxels above the cut).
            shapes: ``(N, V)``, non-negative up to rounding; any scale.
            cut: Energy cut (MeV), or None for the plain composition.
            preference: ``(N, V)`` score of how likely each voxel is to be hit (e.g. the shape
                model's code before it is clipped to "empty").
            fill: Function of the lost layers ``(N, L)`` bool returning ``(N, V)`` non-negative
                patterns for them (e.g. :meth:`FaintLayerLibrary.patterns`); zero where it has none.
        """
        if cut is not None:  # a layer below the cut cannot hold a voxel above it
            layer_energies = torch.where(layer_energies < cut, torch.zeros_like(layer_energies), layer_energies)
        showers = self._scaled(shapes.clamp_min(0.0), layer_energies)
        if cut is None:
            return showers
        showers = self._through_cut(showers, layer_energies, cut)
        lost = (self.layer_energies(showers) <= 0) & (layer_energies > 0)
        score = shapes if preference is None else preference
        if fill is not None and bool(lost.any()):
            pattern = fill(lost).clamp_min(0.0)
            refill = self._through_cut(self._scaled(pattern, layer_energies), layer_energies, cut)
            showers = torch.where(self.per_voxel(lost), refill, showers)
            lost = (self.layer_energies(showers) <= 0) & (layer_energies > 0)
            has_pattern = self.layer_energies(pattern) > 0
            score = torch.where(self.per_voxel(has_pattern), pattern, score)
        best = self._first_best_voxel(score)
        return torch.where(self.per_voxel(lost) & best, self.per_voxel(layer_energies), showers)

    def _scaled(self, shapes: Tensor, layer_energies: Tensor) -> Tensor:
        sums = self.layer_energies(shapes)
        return shapes / self.per_voxel(sums).clamp_min(1e-30) * self.per_voxel(layer_energies)

    def _through_cut(self, showers: Tensor, layer_energies: Tensor, cut: Tensor | float) -> Tensor:
        """Drop voxels below the cut and rescale the rest to the layer energies."""
        showers = torch.where(showers < cut, torch.zeros_like(showers), showers)
        return self._scaled(showers, layer_energies)

    def _first_best_voxel(self, score: Tensor) -> Tensor:
        """``(N, V)`` bool: per shower and layer, the first voxel with the layer's highest score."""
        n, n_voxels = score.shape
        if self.layer_size is not None:  # argmax returns the first of equal maxima
            first = score.reshape(n, self.n_layers, self.layer_size).argmax(2, keepdim=True)
            # a comparison, not a scatter of a constant, which torch.jit.trace cannot record
            return (torch.arange(self.layer_size, device=score.device) == first).reshape(n, n_voxels)
        index = self.voxel_layer.expand(n, -1)
        layer_max = score.new_full((n, self.n_layers), -torch.inf).scatter_reduce(1, index, score, "amax")
        position = torch.arange(n_voxels, device=score.device).expand(n, -1)
        candidate = torch.where(score >= self.per_voxel(layer_max), position, n_voxels)
        first = torch.full_like(layer_max, n_voxels, dtype=torch.long).scatter_reduce(1, index, candidate, "amin")
        return position == self.per_voxel(first)


class FaintLayerLibrary(nn.Module):
    """Hit patterns of faint training layers, to fill a layer a shape model left empty.

    A two-stage model (layer energies, then shapes) can be told by its first stage that a layer
    holds a few MeV while its shape model, for which such a layer is one or two rare hits among
    hundreds of voxels, leaves every voxel empty (on ds2, 5 % of the occupied layers; 30 % in the
    first layer). Where the hits of such a layer go, how many there are and how they share its
    energy are then better taken from the data than invented: per layer the library keeps up to
    ``capacity`` training layers with 1 to ``max_hits`` hits, each with its layer energy, the
    incident energy and the energy fractions of its hits. A layer to fill takes the pattern of one
    of the ``neighbours`` library entries nearest in ``(log10 layer energy, log10 incident
    energy)``, chosen by a uniform number: a frozen-shower library, as fast simulations of
    sampling calorimeters use, for the few faint layers the model cannot place.

    Args:
        layer_offsets: Voxel index of each layer's start plus the total, ``(L + 1,)``.
        capacity: Entries kept per layer.
        max_hits: Most hits of a kept layer.
        neighbours: How many nearest entries a fill chooses from.
    """

    def __init__(self, layer_offsets: list[int], capacity: int = 512, max_hits: int = 8, neighbours: int = 8) -> None:
        super().__init__()
        self.layer_offsets = [int(o) for o in layer_offsets]
        n_layers = len(self.layer_offsets) - 1
        self.neighbours = neighbours
        self.register_buffer("voxels", torch.zeros(n_layers, capacity, max_hits, dtype=torch.long))
        self.register_buffer("fractions", torch.zeros(n_layers, capacity, max_hits))
        self.register_buffer("keys", torch.zeros(n_layers, capacity, 2))  # log10 layer / incident energy (MeV)
        self.register_buffer("size", torch.zeros(n_layers, dtype=torch.long))

    @torch.no_grad()
    def fit(self, showers: Tensor, incident_energies: Tensor, seed: int = 0) -> FaintLayerLibrary:
        """Choose the entries from training showers ``(N, V)`` MeV (voxels below the cut already zero)
        and their incident energies ``(N, 1)`` MeV; a layer with more faint examples than the capacity
        keeps a random subset (``seed``)."""
        n_layers, capacity, max_hits = self.voxels.shape
        generator = torch.Generator().manual_seed(seed)
        showers, incident = showers.float().cpu(), incident_energies.float().reshape(-1).cpu()
        self.size.zero_()
        for layer in range(n_layers):
            lo, hi = self.layer_offsets[layer], self.layer_offsets[layer + 1]
            block = showers[:, lo:hi]
            hits = (block > 0).sum(1)
            chosen = torch.nonzero((hits >= 1) & (hits <= max_hits)).reshape(-1)
            chosen = chosen[torch.randperm(len(chosen), generator=generator)[:capacity]]
            if len(chosen) == 0:
                continue
            k = min(max_hits, hi - lo)
            values, where = block[chosen].topk(k, dim=1)
            energy = values.sum(1)
            size = len(chosen)
            self.voxels[layer, :size, :k] = (where + lo).to(self.voxels.device)
            self.fractions[layer, :size, :k] = (values / energy[:, None]).to(self.fractions.device)
            keys = torch.stack([energy.log10(), incident[chosen].log10()], dim=1)
            self.keys[layer, :size] = keys.to(self.keys.device)
            self.size[layer] = size
        return self

    def patterns(self, layer_energies: Tensor, incident_energies: Tensor, wanted: Tensor, uniform: Tensor) -> Tensor:
        """Energy fractions ``(N, V)`` for the ``wanted`` layers (``(N, L)`` bool) that the library
        covers, zero elsewhere; ``layer_energies (N, L)`` and ``incident_energies (N, 1)`` in MeV,
        ``uniform (N, L)`` in ``[0, 1)`` picks among the nearest entries."""
        _, capacity, max_hits = self.voxels.shape
        n_voxels = self.layer_offsets[-1]
        out = torch.zeros(layer_energies.shape[0], n_voxels, device=layer_energies.device)
        rows, layers = torch.nonzero(wanted & (self.size > 0)[None], as_tuple=True)
        if len(rows) == 0:
            return out
        query = torch.stack(
            [layer_energies[rows, layers].float().clamp_min(1e-30).log10(),
             incident_energies.reshape(-1)[rows].float().log10()], dim=1,
        )  # fmt: skip
        distance = ((self.keys[layers] - query[:, None, :]) ** 2).sum(-1)  # (n, capacity)
        empty = torch.arange(capacity, device=distance.device)[None] >= self.size[layers][:, None]
        distance = distance.masked_fill(empty, torch.inf)
        k = torch.minimum(self.size[layers], torch.tensor(self.neighbours, device=distance.device))
        nearest = distance.topk(min(self.neighbours, capacity), dim=1, largest=False).indices
        pick = (uniform[rows, layers].float() * k).long().clamp(max=k - 1)
        entry = nearest.gather(1, pick[:, None]).reshape(-1)
        # Accumulate: the padding of short patterns repeats a voxel index with a zero fraction.
        index = (rows[:, None].expand(-1, max_hits), self.voxels[layers, entry])
        return out.index_put_(index, self.fractions[layers, entry], accumulate=True)


class LayerEnergyStage(nn.Module):
    """The first of two stages: a shower's layer energies given its conditions (CaloFlow's flow I,
    Krause and Shih, arXiv:2106.05285), shared by the families that generate in two stages.

    Layer energies ``E`` (MeV, ``(N, L)``) are coded as ``u`` in ``[0, 1]^L`` by
    :class:`LayerDecomposition`, logit-mapped and standardised, and a conditional flow models the
    codes. With ``occupancy``, an autoregressive Bernoulli (:class:`AutoregressiveBernoulli`) first
    draws which layers hold energy and the flow, told the occupancy, draws only the codes it leaves
    free: empty layers stay exactly empty. The stage also gives the second stage its context,
    the standardised ``log10(E + cut)``.

    Args:
        layer_offsets: Voxel offsets of the layers, ``L + 1`` numbers.
        flow: The conditional flow over the ``L`` codes (its kind and size are the family's choice);
            its context is the mapped conditions ``(N, K)``, plus the ``L`` occupancy flags with
            ``occupancy``.
        n_conditions: ``K``, the width of the mapped conditions.
        logit_delta: ``delta`` of the codes' logit map.
        occupancy: Draw which layers hold energy first.
    """

    def __init__(
        self, layer_offsets: list[int], flow: nn.Module, n_conditions: int, logit_delta: float = 1e-6,
        occupancy: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        n_layers = len(layer_offsets) - 1
        self.decomposition = LayerDecomposition(layer_offsets)
        self.logit = Logit(logit_delta)
        self.energy_scaler = Standardize(n_layers)
        self.log_energy_scaler = Standardize(n_layers)
        self.energy_flow = flow
        self.occupancy = AutoregressiveBernoulli(n_layers, n_conditions) if occupancy else None

    @classmethod
    def with_coupling_flow(
        cls, layer_offsets: list[int], n_conditions: int, occupancy: bool = False, seed: int = 0
    ) -> LayerEnergyStage:
        """The stage with a coupling spline flow (6 transforms, 128 wide, 8 bins): fast to sample."""
        n_layers = len(layer_offsets) - 1
        # Told the occupancy, the flow learns the free codes; the fixed ones are filled with noise.
        context = n_conditions + n_layers if occupancy else n_conditions
        flow = coupling_spline_flow(n_layers, context, 6, 128, 8, seed)
        return cls(layer_offsets, flow, n_conditions, 1e-6, occupancy)

    def codes(self, layer_energies: Tensor, incident_energies: Tensor) -> Tensor:
        """The flow's coordinates (before standardising) of layer energies ``(N, L)`` MeV."""
        return self.logit(self.decomposition.encode_energies(layer_energies, incident_energies))

    @torch.no_grad()
    def fit(self, layer_energies: Tensor, incident_energies: Tensor, cut_mev: Tensor | float) -> None:
        """Learn the standardisations from training layer energies ``(N, L)`` MeV."""
        u = self.codes(layer_energies, incident_energies)
        free = None if self.occupancy is None else ~self.decomposition.determined_codes(layer_energies > 0)[0]
        self.energy_scaler.fit(u, free)
        self.log_energy_scaler.fit(torch.log10(layer_energies + cut_mev))

    def fit_showers(self, showers: Tensor, incident_energies: Tensor, cut_mev: Tensor | float) -> None:
        """:meth:`fit` on the layer energies of training ``showers`` ``(N, V)`` MeV, already
        through the energy cut (see :meth:`conditioned`)."""
        self.fit(self.decomposition.layer_energies(showers), incident_energies, cut_mev)

    def context(self, layer_energies: Tensor, cut_mev: Tensor | float) -> Tensor:
        """What the second stage is told of the layer energies: standardised ``log10(E + cut)``, ``(N, L)``."""
        return self.log_energy_scaler(torch.log10(layer_energies + cut_mev))

    def nll(self, layer_energies: Tensor, incident_energies: Tensor, conditions: Tensor) -> Tensor:
        """Negative log-likelihood of the layer codes (and occupancy) per shower, ``(N,)``, for mapped
        ``conditions`` ``(N, K)``."""
        z = self.energy_scaler(self.codes(layer_energies, incident_energies))
        if self.occupancy is None:
            return -flow_log_prob(self.energy_flow, z, conditions)
        occupied = (layer_energies > 0).float()
        fixed, _ = self.decomposition.determined_codes(occupied)
        z = torch.where(fixed, torch.randn_like(z), z)  # the flow need not model what occupancy fixes
        nll = -flow_log_prob(self.energy_flow, z, torch.cat([conditions, occupied], dim=1))
        return nll - self.occupancy.log_prob(occupied, conditions)

    def sample(
        self, conditions: Tensor, incident_energies: Tensor, noise: Tensor, uniform: Tensor | None = None
    ) -> Tensor:
        """Layer energies (MeV) ``(N, L)`` from the flow's base ``noise`` (and, with occupancy, its uniforms)."""
        occupied = None if self.occupancy is None else self.occupancy.sample_from_uniform(conditions, uniform)
        context = conditions if occupied is None else torch.cat([conditions, occupied], dim=1)
        u = self.logit.inverse(self.energy_scaler.inverse(flow_from_noise(self.energy_flow, context, noise)))
        if occupied is not None:
            fixed, values = self.decomposition.determined_codes(occupied)
            u = torch.where(fixed, values.to(u.dtype), u)
        return self.decomposition.decode_energies(u, incident_energies)

    def conditioned(
        self, showers: Tensor, incident_energies: Tensor, conditions: Tensor, cut_mev: Tensor | float
    ) -> tuple[Tensor, Tensor]:
        """Training a second stage: its conditions (mapped ``conditions`` ``(N, K)`` plus the
        :meth:`context` of the showers' layer energies, ``(N, K + L)``) and this stage's NLL ``(N,)``.

        ``showers`` ``(N, V)`` MeV, already through the energy cut: the training loop's
        dequantisation noise would otherwise give every empty layer a trace of energy to learn."""
        layer_energies = self.decomposition.layer_energies(showers)
        context = torch.cat([conditions, self.context(layer_energies, cut_mev)], dim=1)
        return context, self.nll(layer_energies, incident_energies, conditions)

    def random_inputs(self, n: int, device: torch.device) -> list[Tensor]:
        """The random numbers :meth:`drawn` takes: the flow's base noise ``(n, L)``, and with
        occupancy its uniforms ``(n, L)``."""
        n_layers = self.decomposition.n_layers
        inputs = [torch.randn(n, n_layers, device=device)]
        if self.occupancy is not None:
            inputs.append(torch.rand(n, n_layers, device=device))
        return inputs

    def drawn(
        self, conditions: Tensor, incident_energies: Tensor, inputs: list[Tensor], cut_mev: Tensor | float
    ) -> tuple[Tensor, Tensor]:
        """Sampling: layer energies (MeV) ``(N, L)`` from :meth:`random_inputs`, and the second
        stage's conditions ``(N, K + L)`` as :meth:`conditioned` gives them in training."""
        layer_energies = self.sample(conditions, incident_energies, *inputs)
        return torch.cat([conditions, self.context(layer_energies, cut_mev)], dim=1), layer_energies

    SAVED_NAMES = ("decomposition", "energy_scaler", "log_energy_scaler", "energy_flow", "occupancy")

    @classmethod
    def moved_keys(cls, state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        """A state dict whose stage entries sit at the family's top level (models saved before the
        stage was shared) with them moved under ``prefix``; other state dicts unchanged."""
        return {f"{prefix}{key}" if key.split(".")[0] in cls.SAVED_NAMES else key: value
                for key, value in state_dict.items()}  # fmt: skip
