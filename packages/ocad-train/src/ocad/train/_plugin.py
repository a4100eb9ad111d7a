"""The ``ocad`` entry point of ocad-train: adds ``train``, ``export`` and ``models`` to the CLI.

Loaded by every :class:`ocad.core.plugins.PluginRegistry`, so it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from ocad.core.plugins import hookimpl


@hookimpl
def ocad_cli_commands(subparsers: Any) -> None:
    from ._cli import add_commands

    add_commands(subparsers)
