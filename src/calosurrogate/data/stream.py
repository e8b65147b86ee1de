"""Training batches streamed from a shower file: ``(showers, conditions)`` tensors, shuffled per epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from calosurrogate.data.hdf5 import ShowerFile


class ShowerStream:
    """Batches of ``(showers, conditions)`` tensors from a file range, shuffled per epoch.

    Args:
        path: The HDF5 file.
        condition_names: Condition datasets (the first is ``incident_energies``).
        start, stop: Shower range used.
        batch_size: Showers per batch.
        chunk_size: Showers read at a time.
        cache: Keep everything read in memory (for files that fit).
    """

    def __init__(
        self,
        path: Path,
        condition_names: tuple[str, ...],
        start: int,
        stop: int,
        batch_size: int,
        chunk_size: int,
        cache: bool,
    ) -> None:
        self.path = path
        self.condition_names = condition_names
        self.start, self.stop = start, stop
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.cache = cache
        self._cached: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    def n_batches(self) -> int:
        """Batches per epoch: batches never straddle two chunks, so each chunk ends in its own partial batch."""
        full_chunks, rest = divmod(len(self), self.chunk_size)
        return full_chunks * math.ceil(self.chunk_size / self.batch_size) + math.ceil(rest / self.batch_size)

    def _chunks(self) -> list[tuple[torch.Tensor, torch.Tensor]] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._cached is not None:
            return self._cached

        def read() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            extra = self.condition_names[1:]
            with ShowerFile(self.path, negative="clip", conditions=extra) as f:
                for batch in f.iter_chunks(self.chunk_size, self.start, self.stop):
                    cond = np.concatenate([batch.incident_energies, *(batch.conditions[k] for k in extra)], axis=1)
                    yield torch.from_numpy(batch.showers.astype(np.float32)), torch.from_numpy(cond.astype(np.float32))

        if self.cache:
            self._cached = list(read())
            return self._cached
        return read()

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything in the range (for fitting preprocessing on small ranges)."""
        chunks = list(self._chunks())
        return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])

    def batches(self, generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches; shuffled (chunk order and within chunks) when a generator is given."""
        chunks = self._chunks()
        if generator is not None and isinstance(chunks, list):
            order = torch.randperm(len(chunks), generator=generator).tolist()
            chunks = [chunks[i] for i in order]
        for showers, conds in chunks:
            idx = (
                torch.randperm(len(showers), generator=generator)
                if generator is not None
                else torch.arange(len(showers))
            )
            for lo in range(0, len(idx), self.batch_size):
                sel = idx[lo : lo + self.batch_size]
                yield showers[sel], conds[sel]
