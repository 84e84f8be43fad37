"""Checking what arrives over the controller's interface before anything acts on it.

Every method of `controller.service` is wrapped by `guarded`: the argument count, each
argument's type (text) and size are checked first, JSON arguments are parsed with size
and depth limits, numbers must be finite, and whatever goes wrong answers a typed
refusal `{ok: false, error, message}` — never a traceback, never a file's content.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

MAX_ARGUMENT = 64 * 1024
"""Characters in one method argument."""
MAX_JSON_DEPTH = 6

INVALID = "invalid_argument"
NOT_FOUND = "not_found"
UNAUTHENTICATED = "unauthenticated"
REFUSED = "refused"
INTERNAL = "internal"

_log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[str]]


class InvalidRequest(ValueError):
    """An argument that is not what the method takes; `error` types the refusal."""

    def __init__(self, message: str, error: str = INVALID) -> None:
        """A refusal of type `error` with `message` (which must not echo content)."""
        super().__init__(message)
        self.error = error


def refused(message: str, error: str = REFUSED) -> str:
    """The JSON answer of a refused request."""
    return json.dumps({"ok": False, "error": error, "message": message})


def guarded(name: str, handler: Handler, arity: int) -> Handler:
    """`handler` behind the checks of this module (see the module docstring)."""

    async def method(parent: Any, *args: Any) -> str:
        if len(args) != arity:
            return refused(f"{name} takes {arity} arguments, got {len(args)}", INVALID)
        for number, value in enumerate(args, 1):
            if not isinstance(value, str):
                return refused(
                    f"{name}: argument {number} must be text, not {type(value).__name__}",
                    INVALID,
                )
            if len(value) > MAX_ARGUMENT:
                return refused(
                    f"{name}: argument {number} is longer than {MAX_ARGUMENT} characters",
                    INVALID,
                )
        try:
            return await handler(parent, *args)
        except InvalidRequest as exc:
            return refused(str(exc), exc.error)
        except Exception as exc:  # the interface answers; it never dies or leaks a traceback
            _log.error("%s failed: %s", name, type(exc).__name__)
            return refused(f"{name} failed inside the controller; see its log", INTERNAL)

    method.__name__ = name
    return method


def json_object(text: str, what: str) -> dict[str, Any]:
    """Parse a JSON object argument ('' is {}); InvalidRequest without echoing it."""
    if not text:
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except InvalidRequest:
        raise
    except RecursionError:
        raise InvalidRequest(f"{what}: nested too deeply") from None
    except ValueError:
        raise InvalidRequest(f"{what}: not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def numbers(values: dict[str, Any], what: str) -> dict[str, float]:
    """Name → finite number (not a bool, not NaN or infinite)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{what}: {_name(key)} must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidRequest(f"{what}: {_name(key)} must be a finite number")
        out[key] = number
    return out


def _name(key: str) -> str:
    return repr(key[:64]) if key.isprintable() else "a name with unprintable characters"


def _no_constant(token: str) -> Any:
    raise InvalidRequest(f"{token} is not a number JSON allows")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            return level
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest
