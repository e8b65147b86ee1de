"""calosurrogate: fast generative surrogates for calorimeter showers, and the numbers to judge them."""

__version__ = "0.1.0"

import os as _os

# Sampling and training work on (N, voxels) tensors of tens to hundreds of MB, allocated afresh
# by every element-wise operation; on Linux the page faults of such fresh memory cost more than
# the arithmetic. With this set, PyTorch's CPU allocator asks the kernel for transparent huge
# pages for large blocks (512x fewer faults). It is read at allocation time; a user's own
# setting wins.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
