"""Typed driver errors: what went wrong talking to an instrument, never a bare exception."""

from __future__ import annotations


class DriverError(Exception):
    """Base class of every error a driver raises to its caller."""


class DriverTimeout(DriverError):
    """The instrument did not answer within the allowed time."""


class Disconnected(DriverError):
    """The connection to the instrument is down (refused, dropped or never made)."""


class ProtocolError(DriverError):
    """The instrument answered with something the protocol does not allow."""


class WriteRejected(DriverError):
    """The instrument refused a write (bad type, out of range, read-only)."""


class ReadBackMismatch(DriverError):
    """A critical setpoint read back differently from what was written."""


class ProfileError(DriverError):
    """A device profile is malformed or lacks what is asked of it."""
