"""Package fronts whose public names load on first use (a module ``__getattr__``, PEP 562).

A front lists its public names (``__all__``) without importing the modules that define them, so
that importing one light module of the package (a file reader) does not import the heavy ones
(torch, FastAPI)::

    _PUBLIC = {"MRIBatch": "batch", ...}  # name -> the module of the package defining it
    __all__ = sorted(_PUBLIC)
    __getattr__ = lazy_names(__name__, _PUBLIC)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, public: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` that imports ``public[name]`` on first use."""

    def __getattr__(name: str) -> Any:
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
