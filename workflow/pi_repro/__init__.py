"""Position Interpolation reproduction: the protocols of Chen et al. (2023) as importable, tested functions.

The Snakemake rules (``workflow/rules``) only do path arithmetic; the scripts (``workflow/scripts``) parse
arguments and call this package.
"""
__version__ = "0.1.0"

# The extension methods (pi_repro.methods: one entry each): their names, for the schema, the wildcards and paper
# cells. Position Interpolation, direct fine-tuning, the control, and the methods that came after PI.
from .methods import METHODS as METHODS  # noqa: E402
