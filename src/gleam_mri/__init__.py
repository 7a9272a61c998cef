"""gleam-mri: unrolled networks for accelerated multi-coil MRI, trained greedily (GLEAM)."""

__version__ = "0.1.0"
