"""Position Interpolation reproduction: the protocols of Chen et al. (2023) as importable, tested functions.

The Snakemake rules (``workflow/rules``) only do path arithmetic; the scripts (``workflow/scripts``) parse
arguments and call this package.
"""
__version__ = "0.1.0"

# The extension methods, in one place (schema, code, wildcard constraints): Position Interpolation, direct
# fine-tuning at the extended window, and the control (the base model trained further at its own window).
METHODS = ("PI", "FT", "CT")
