"""User-facing errors: one clear message, no traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class PartsegError(Exception):
    """A problem with the user's input (data, params, checkpoint) or environment.

    The message must name the file or key at fault and say what to do. Entry points
    (stages, the CLI) print it as one line and exit with status 2 instead of a traceback.
    """


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry point so a PartsegError becomes `error: <message>` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except PartsegError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: completed outputs are kept; rerun to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
