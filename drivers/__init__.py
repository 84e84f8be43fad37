"""Talking to instruments: connections, typed tags, device profiles, timeouts.

The engine sees capabilities (``temperature.sp``), never a node id or register.
"""

from drivers.device import Device, DevicePool, same_value
from drivers.errors import (
    Disconnected,
    DriverError,
    DriverTimeout,
    ProfileError,
    ProtocolError,
    ReadBackMismatch,
    WriteRejected,
)
from drivers.link import ConnectionStatus
from drivers.profile import DeviceProfile, load_profile
from drivers.tags import Quality, Reading, Tag, Value

__all__ = [
    "ConnectionStatus",
    "Device",
    "DevicePool",
    "DeviceProfile",
    "Disconnected",
    "DriverError",
    "DriverTimeout",
    "ProfileError",
    "ProtocolError",
    "Quality",
    "ReadBackMismatch",
    "Reading",
    "Tag",
    "Value",
    "WriteRejected",
    "load_profile",
    "same_value",
]
