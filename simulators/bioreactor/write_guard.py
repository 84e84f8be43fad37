"""Range checking of client writes to setpoint variables.

asyncua checks access rights and variant types but not value ranges. This
AttributeService subclass answers an out-of-range (or NaN) Double written to a
guarded node with ``BadOutOfRange`` for that node alone; every other write item
of the same request goes through the normal service, so per-node status codes
stay exact. Writes of the wrong variant type are left to asyncua, which answers
``BadTypeMismatch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService

from simulators.bioreactor.uatyping import status

__all__ = ["RangeGuardedAttributeService", "install_range_guard"]

_ADMIN = User(role=UserRole.Admin)
_OUT_OF_RANGE = status(ua.StatusCodes.BadOutOfRange)


class RangeGuardedAttributeService(AttributeService):
    """AttributeService that refuses Double values outside ``limits[node]``."""

    def __init__(
        self,
        aspace: AddressSpace,
        limits: Mapping[ua.NodeId, tuple[float, float]],
        refuse: Callable[[ua.NodeId], ua.StatusCode | None] | None = None,
    ) -> None:
        """Guard the nodes in ``limits`` (node id → inclusive low, high); ``refuse``
        may answer any write with a status (fault injection)."""
        super().__init__(aspace)
        self._limits = dict(limits)
        self._refuse = refuse

    def _refusal(self, item: ua.WriteValue) -> ua.StatusCode | None:
        if item.AttributeId != ua.AttributeIds.Value:
            return None
        if self._refuse is not None:
            injected = self._refuse(item.NodeId)
            if injected is not None:
                return injected
        limits = self._limits.get(item.NodeId)
        variant = item.Value.Value if item.Value is not None else None
        if limits is None or variant is None or variant.VariantType != ua.VariantType.Double:
            return None
        value = variant.Value
        if not isinstance(value, float) or not math.isfinite(value):
            return _OUT_OF_RANGE
        low, high = limits
        return None if low <= value <= high else _OUT_OF_RANGE

    async def write(self, params: ua.WriteParameters, user: User = _ADMIN) -> list[ua.StatusCode]:
        """Write what is in range; answer BadOutOfRange for the rest."""
        refusals = [self._refusal(item) for item in params.NodesToWrite]
        if all(r is None for r in refusals):
            return await super().write(params, user)
        passed = [item for item, r in zip(params.NodesToWrite, refusals, strict=True) if r is None]
        done = iter(
            await super().write(ua.WriteParameters(NodesToWrite=passed), user) if passed else []
        )
        return [r if r is not None else next(done) for r in refusals]


def install_range_guard(
    server: Server,
    limits: Mapping[ua.NodeId, tuple[float, float]],
    refuse: Callable[[ua.NodeId], ua.StatusCode | None] | None = None,
) -> None:
    """Replace ``server``'s attribute service by a range-guarded one."""
    iserver = server.iserver
    iserver.attribute_service = RangeGuardedAttributeService(iserver.aspace, limits, refuse)
