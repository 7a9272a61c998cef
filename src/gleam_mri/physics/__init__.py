"""MRI physics: the multi-coil forward operator, sampling masks, coil maps and phantoms."""

from gleam_mri.physics.operators import LinearOperator, SenseOp

__all__ = ["LinearOperator", "SenseOp"]
