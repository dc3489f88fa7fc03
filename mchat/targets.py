"""Code named in configuration as "module:name" (routes, periodic jobs, the ports'
implementations), imported on first use like Django's URLconf views."""

from __future__ import annotations

from importlib import import_module
from typing import Any


def target_resolve(target: str) -> Any:
    """The object a "module:name" reference names."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)
