"""``python -m calosurrogate`` (and ``torchrun ... -m calosurrogate train``) runs the ``calo`` command line."""

from calosurrogate.cli import main

main()
