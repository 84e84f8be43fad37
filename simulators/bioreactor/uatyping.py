"""Typed constructors for asyncua values whose stubs want its wrapper types."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from asyncua import ua

__all__ = ["node_id", "status", "ua_time"]


def node_id(identifier: str, namespace_index: int) -> ua.NodeId:
    """A string node id ``ns=<namespace_index>;s=<identifier>``."""
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace_index))


def status(code: int) -> ua.StatusCode:
    """A status code from a ``ua.StatusCodes`` constant."""
    return ua.StatusCode(ua.UInt32(code))


def ua_time(moment: datetime) -> ua.DateTime:
    """A timezone-aware datetime typed as asyncua's DateTime (same object)."""
    return cast(ua.DateTime, moment)
