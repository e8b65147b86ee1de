"""calosurrogate: fast generative surrogates for calorimeter showers, and the numbers to judge them."""

__version__ = "0.1.0"
