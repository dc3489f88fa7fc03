"""Code named in configuration as "module:name" (routes, periodic jobs, the ports'
implementations), imported on first use like Django's URLconf views; and `Port`, the one
implementation of a port a process uses."""

from __future__ import annotations

import threading
from importlib import import_module
from typing import Any, Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


def target_resolve(target: str) -> Any:
    """The object a "module:name" reference names."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


class Port(Generic[T]):
    """A port's implementation in this process: the one installed (at start-up, or by a test),
    else the one the setting `setting` names ("module:name", called once, on first use)."""

    def __init__(self, setting: str):
        self.setting = setting
        self._installed: T | None = None
        self._lock = threading.Lock()

    def install(self, implementation: T | None) -> None:
        """Use `implementation` from now on; None: the setting's again, created on next use.
        Under the lock current() creates the default in: an install meanwhile is not overwritten."""
        with self._lock:
            self._installed = implementation

    def current(self) -> T:
        installed = self._installed
        if installed is None:
            with self._lock:
                if self._installed is None:
                    self._installed = target_resolve(getattr(settings, self.setting))()
                installed = self._installed
        return installed
