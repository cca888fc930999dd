"""User-facing errors: what went wrong, where (file, line, key), and how to fix it.

Entry points catch :class:`UserError` and print its message as one paragraph, without a
traceback, and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: a config value, a dataset on disk, a weights file."""


def exit_on_user_error(function: Callable[[], T]) -> T:
    """Run ``function``; on a :class:`UserError`, print it as one paragraph and exit 2."""
    try:
        return function()
    except UserError as error:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]camexp: {type(error).__name__}[/]: {escape(str(error))}", highlight=False
        )
        sys.exit(2)
