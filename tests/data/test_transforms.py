"""Transforms with fit / forward / inverse, checked on data whose answer is known."""

from __future__ import annotations

import torch


def _correlated(n: int, sizes: list[int], seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Gaussian samples whose blocks have known covariances ``A A^T`` and are independent of each other."""
    generator = torch.Generator().manual_seed(seed)
    mixings = [torch.randn(size, size, generator=generator, dtype=torch.float64) for size in sizes]
    blocks = [torch.randn(n, a.shape[0], generator=generator, dtype=torch.float64) @ a.T for a in mixings]
    return torch.cat(blocks, dim=1).float() + 3.0, [a @ a.T for a in mixings]


def test_masked_standardize_uses_only_the_counted_entries() -> None:
    from calosurrogate.data.transforms import Standardize

    x = torch.tensor([[1.0, 5.0], [3.0, -100.0], [100.0, 7.0], [5.0, 9.0]])
    mask = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    scaler = Standardize(2).fit(x, mask)
    assert torch.allclose(scaler.mean, torch.tensor([3.0, 7.0]))
    assert torch.allclose(scaler.std, torch.tensor([2.0, 2.0]))  # sample std of (1, 3, 5) and (5, 7, 9)
    lonely = Standardize(2).fit(x, torch.tensor([[True, False], [True, False], [False, False], [False, True]]))
    assert lonely.mean[1] == 0.0 and lonely.std[1] == 1.0  # one counted entry: no spread to learn


def _decomposition():
    from calosurrogate.models.components import LayerDecomposition

    return LayerDecomposition([0, 2, 4, 6, 8, 10])  # five layers of two voxels


def test_determined_codes_are_the_codes_the_occupancy_fixes() -> None:
    decomposition = _decomposition()
    generator = torch.Generator().manual_seed(0)
    occupied = torch.rand(500, 5, generator=generator) < 0.5
    layer_e = torch.where(occupied, torch.rand(500, 5, generator=generator) + 0.1, torch.zeros(500, 5))
    u = decomposition.encode_energies(layer_e, torch.full((500, 1), 10.0))
    fixed, values = decomposition.determined_codes(occupied)
    assert torch.equal(u[fixed], values[fixed])
    free = u[~fixed]
    assert ((free > 0) & (free < 1)).all()  # what is left is neither point mass
    # by hand: layers 0 and 3 occupied -> u0 free, layer 0 free (3 follows), 1 and 2 zero, 3 is the last (1)
    fixed, values = decomposition.determined_codes(torch.tensor([[1, 0, 0, 1, 0]]))
    assert fixed.tolist() == [[False, False, True, True, True]]
    assert values[0, 3:].tolist() == [0.0, 1.0]
    fixed, values = decomposition.determined_codes(torch.zeros(1, 5))
    assert fixed.all() and (values == 0).all()


def test_decoding_with_the_determined_codes_leaves_empty_layers_exactly_empty() -> None:
    decomposition = _decomposition()
    occupied = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    fixed, values = decomposition.determined_codes(occupied)
    u = torch.where(fixed, values, torch.full((3, 5), 0.3))  # any free codes in (0, 1)
    layer_e = decomposition.decode_energies(u, torch.full((3, 1), 100.0))
    assert torch.equal(layer_e > 0, occupied.bool())
    assert torch.allclose(layer_e.sum(1), 0.3 * 1.5 * torch.full((3,), 100.0))


def test_composition_through_the_cut_keeps_every_layer_energy() -> None:
    decomposition = _decomposition()
    cut = 1.0
    layer_e = torch.tensor([[10.0, 1.5, 0.0, 4.0, 3.0]])
    # layer 0: one voxel below the cut after scaling (10 * 0.05 = 0.5), layer 1: both below (0.75
    # each), layer 2: empty, layer 3: the shape model said empty, layer 4: both kept
    shapes = torch.tensor([[0.95, 0.05, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0]])
    preference = torch.tensor([[0.0, 0.0, -1.0, 2.0, 0.0, 0.0, -3.0, -2.0, 0.0, 0.0]])
    plain = decomposition.compose(layer_e, shapes)
    assert torch.allclose(decomposition.layer_energies(plain), torch.tensor([[10.0, 1.5, 0.0, 0.0, 3.0]]))
    showers = decomposition.compose(layer_e, shapes, cut, preference)
    assert torch.allclose(decomposition.layer_energies(showers), layer_e)
    assert not ((showers > 0) & (showers < cut)).any()  # nothing left for the sampling cut to remove
    assert torch.allclose(showers, torch.tensor([[10.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 4.0, 2.0, 1.0]]))
    # without a preference the shape ranks; a tie goes to the layer's first voxel
    showers = decomposition.compose(layer_e, shapes, cut)
    assert showers[0, 2:4].tolist() == [1.5, 0.0] and showers[0, 6:8].tolist() == [4.0, 0.0]


def test_composition_leaves_a_layer_below_the_cut_empty() -> None:
    decomposition = _decomposition()
    layer_e = torch.tensor([[10.0, 0.4, 0.0, 4.0, 3.0]])  # layer 1 holds less than the cut
    shapes = torch.ones(1, 10)
    showers = decomposition.compose(layer_e, shapes, 1.0)
    assert decomposition.layer_energies(showers).tolist() == [[10.0, 0.0, 0.0, 4.0, 3.0]]
    assert not ((showers > 0) & (showers < 1.0)).any()
    # without a cut the layer keeps its energy
    assert torch.allclose(decomposition.layer_energies(decomposition.compose(layer_e, shapes)), layer_e)


def test_composition_fills_lost_layers_with_the_given_patterns_through_the_cut() -> None:
    decomposition = _decomposition()
    cut = 1.0
    layer_e = torch.tensor([[10.0, 1.5, 0.0, 4.0, 3.0]])
    shapes = torch.tensor([[0.95, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    preference = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 2.0]])
    asked = []

    def fill(lost: torch.Tensor) -> torch.Tensor:
        asked.append(lost.clone())
        # layer 1: both halves fall below the cut (0.75 each); layer 3: 1 + 3 MeV; layer 4: no pattern
        return torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.25, 0.75, 0.0, 0.0]])

    showers = decomposition.compose(layer_e, shapes, cut, preference, fill)
    assert asked[0].tolist() == [[False, True, False, True, True]]  # occupied layers the shapes left empty
    assert torch.allclose(showers, torch.tensor([[10.0, 0.0, 1.5, 0.0, 0.0, 0.0, 1.0, 3.0, 0.0, 3.0]]))
    assert torch.allclose(decomposition.layer_energies(showers), layer_e)


def _library(**options):
    from calosurrogate.models.components import FaintLayerLibrary

    return FaintLayerLibrary([0, 4, 8], **options)  # two layers of four voxels


def _faint_showers() -> tuple[torch.Tensor, torch.Tensor]:
    showers = torch.tensor(
        [
            [3.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0],  # layer 0: 2 hits; layer 1: 3 hits (too many)
            [0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # layer 0: 1 hit; layer 1 empty
            [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0],  # layer 1: 1 hit
        ]
    )
    return showers, torch.tensor([[100.0], [1000.0], [100.0]])


def test_faint_layer_library_keeps_layers_with_few_hits_and_returns_the_nearest_pattern() -> None:
    library = _library(capacity=4, max_hits=2, neighbours=1).fit(*_faint_showers())
    assert library.size.tolist() == [2, 1]
    layer_e = torch.tensor([[4.2, 0.0], [5.0, 0.0], [0.0, 7.0]])
    incident = torch.tensor([[100.0], [1000.0], [500.0]])
    wanted = torch.tensor([[True, False], [True, False], [False, True]])
    patterns = library.patterns(layer_e, incident, wanted, torch.rand(3, 2))
    expected = torch.tensor(
        [
            [0.75, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # nearest: the 4 MeV layer at 100 MeV
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # nearest: the 5 MeV layer at 1000 MeV
            [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # the only faint layer 1
        ]
    )
    assert torch.allclose(patterns, expected)
    assert (library.patterns(layer_e, incident, torch.zeros(3, 2, dtype=torch.bool), torch.rand(3, 2)) == 0).all()


def test_faint_layer_library_chooses_among_the_nearest_by_the_uniform_number() -> None:
    library = _library(capacity=4, max_hits=2, neighbours=2).fit(*_faint_showers())
    layer_e, incident = torch.tensor([[4.2, 0.0]]), torch.tensor([[100.0]])
    wanted = torch.tensor([[True, False]])
    first = library.patterns(layer_e, incident, wanted, torch.tensor([[0.1, 0.0]]))
    second = library.patterns(layer_e, incident, wanted, torch.tensor([[0.9, 0.0]]))
    assert first[0, :4].tolist() == [0.75, 0.25, 0.0, 0.0] and second[0, :4].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_faint_layer_library_keeps_a_reproducible_subset_beyond_its_capacity() -> None:
    generator = torch.Generator().manual_seed(0)
    showers = torch.zeros(200, 8)
    showers[torch.arange(200), torch.randint(0, 4, (200,), generator=generator)] = 1.0 + torch.rand(200)
    incident = torch.full((200, 1), 100.0)
    one, two = (_library(capacity=16, max_hits=2).fit(showers, incident, seed=3) for _ in range(2))
    assert one.size.tolist() == [16, 0]
    assert torch.equal(one.keys, two.keys) and not torch.equal(
        one.keys, _library(capacity=16).fit(showers, incident, 4).keys
    )
    assert torch.allclose(one.fractions[0, :, 0], torch.ones(16))  # one hit each: all the layer's energy


def test_layers_of_one_size_take_the_view_path_with_the_same_results() -> None:
    """ds2/ds3 layers are all one size: views replace gathers and scatters, values unchanged."""
    from calosurrogate.models.components import LayerDecomposition

    fast = LayerDecomposition([0, 3, 6, 9, 12])
    general = LayerDecomposition([0, 3, 6, 9, 12])
    general.layer_size = None  # the index path every geometry can take
    assert fast.layer_size == 3 and LayerDecomposition([0, 2, 5]).layer_size is None
    generator = torch.Generator().manual_seed(0)
    showers = torch.rand(50, 12, generator=generator).round(decimals=1)  # ties within layers
    showers[showers < 0.3] = 0.0
    layers = torch.rand(50, 4, generator=generator) * 3
    for method in ("layer_energies", "_first_best_voxel"):
        assert torch.equal(getattr(fast, method)(showers), getattr(general, method)(showers))
    assert torch.equal(fast.per_voxel(layers), general.per_voxel(layers))
    assert torch.equal(fast.per_voxel(layers)[:, 3:6], layers[:, 1:2].expand(-1, 3))
    assert torch.allclose(fast.compose(layers, showers, 0.2), general.compose(layers, showers, 0.2))
    best = fast._first_best_voxel(showers).reshape(50, 4, 3)
    assert bool((best.sum(2) == 1).all())  # one voxel per layer, the first of equal maxima
