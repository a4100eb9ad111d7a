"""Optional dependencies of ocad-train, imported on use, with errors naming the extra."""

from __future__ import annotations

import importlib
from typing import Any

from ocad.core import OcadDependencyError

__all__ = ["require_extra"]


def require_extra(module: str, extra: str, purpose: str) -> Any:
    """Import ``module`` or raise :class:`OcadDependencyError` telling to install ``ocad-train[extra]``.

    (``ocad.core``'s own helper names ``ocad-core[extra]``; these extras live in ocad-train.)
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        err = OcadDependencyError(module, extra, purpose)
        text = f"{purpose} needs the optional dependency {module!r}; install it with: pip install \"ocad-train[{extra}]\""
        err.args = (text,)
        err.msg = text  # ImportError.__str__ prints msg
        raise err from exc
