"""One Python function per command, reachable as `rimscope.<command>(...)` (TotalSegmentator's
way): `rimscope.predict`, `rimscope.evaluate`, `rimscope.train`, `rimscope.simulate`,
`rimscope.pretrain`, with keyword arguments; each CLI module is a thin wrapper over its function.

`rimscope.evaluate`, `rimscope.train` and `rimscope.simulate` are also the stage packages, and
importing a subpackage rebinds the package attribute to the module. So those packages make
themselves callable (`callable_package`): calling the module calls the command's function,
whatever was imported first.
"""
from __future__ import annotations

import importlib
import sys
import types


def callable_package(name: str, target: str) -> None:
    """Make package `name` callable as the function `target` ("module:function")."""
    module_name, func_name = target.split(":")

    class _CommandPackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(module_name), func_name)(*args, **kwargs)

    sys.modules[name].__class__ = _CommandPackage
