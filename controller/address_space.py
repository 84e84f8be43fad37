"""The controller's browsable OPC UA address space: each batch as an object.

Next to the ``Controller`` object (whose methods take commands) the server exposes,
in namespace ``urn:cellbatch:controller``::

    Objects/StorageProblem                 String    while the store cannot commit: the
                                                     STORAGE line (since when, why; running
                                                     batches held); '' otherwise
    Objects/Batches/<batch ID>/            one object per batch of this controller
        State            String    ISA-88 state (Running, Held, …)
        Recipe           String    recipe name
        RecipeVersion    String
        COI              String    chain-of-identity ID
        Why              String    current hold/stop reason ('' when none)
        ProcessTime      Double    process seconds since the batch was created
        ActiveElements   String[]  "path state" of the batch and each active element
        OpenAlarms       String[]  alarms not yet acknowledged, one line each
        OpenPrompts      String[]  "id element: text" of each open operator prompt
        Units/<alias>/<CPP>/       each critical process parameter of a bound unit
            PV               Double    latest value (status and source time from the
                                       instrument; BadWaitingForInitialData before one)
            SP               Double    setpoint, where the unit has one
            EngineeringUnit  String
            Tag              String    the unit's capability, e.g. temperature.pv
            AlertLow/AlertHigh/ActionLow/ActionHigh  Double  limits the recipe sets

Every variable is read-only to clients and updated by `AddressSpace.update` from a
`BatchView` snapshot (the service calls it about twice a second).
"""

from __future__ import annotations

from typing import Any

from asyncua import Node, Server, ua

STRING = ua.VariantType.String
DOUBLE = ua.VariantType.Double
_LIMITS = (
    ("AlertLow", "alert", 0),
    ("AlertHigh", "alert", 1),
    ("ActionLow", "action", 0),
    ("ActionHigh", "action", 1),
)
_QUALITY = {
    "good": ua.StatusCodes.Good,
    "uncertain": ua.StatusCodes.Uncertain,
    "bad": ua.StatusCodes.Bad,
    "none": ua.StatusCodes.BadWaitingForInitialData,
}


class AddressSpace:
    """The ``Batches`` folder and one object per batch, written from snapshots."""

    def __init__(self, server: Server, idx: int) -> None:
        """Build under `server`'s Objects folder in namespace `idx` (call `init` first)."""
        self.server = server
        self.idx = idx
        self.folder: Node | None = None
        self._nodes: dict[str, dict[str, Node]] = {}  # batch ID → variable name → node
        self._storage: Node | None = None
        self._storage_line = ""

    async def init(self) -> None:
        """Create the ``Batches`` folder and the ``StorageProblem`` variable."""
        objects = self.server.nodes.objects
        self.folder = await objects.add_folder(self.idx, "Batches")
        self._storage = await objects.add_variable(
            self.idx, "StorageProblem", "", varianttype=STRING
        )

    async def storage_problem(self, line: str | None) -> None:
        """Say that the store cannot commit (`controller.storage.storage_line`), or not."""
        assert self._storage is not None, "init() first"
        if (line or "") != self._storage_line:
            await self.server.write_attribute_value(self._storage.nodeid, _text(line or ""))
            self._storage_line = line or ""

    def __contains__(self, batch_id: str) -> bool:
        return batch_id in self._nodes

    async def add_batch(self, batch_id: str, view: dict[str, Any]) -> None:
        """Create the object of a batch from its first snapshot (`BatchView.snapshot`
        plus the summary fields ``state`` and ``coi``)."""
        assert self.folder is not None, "init() first"
        idx = self.idx
        obj = await self.folder.add_object(idx, batch_id)
        nodes: dict[str, Node] = {}
        for name in ("State", "Recipe", "RecipeVersion", "COI", "Why"):
            nodes[name] = await obj.add_variable(idx, name, "", varianttype=STRING)
        nodes["ProcessTime"] = await obj.add_variable(idx, "ProcessTime", 0.0, varianttype=DOUBLE)
        for name in ("ActiveElements", "OpenAlarms", "OpenPrompts"):
            nodes[name] = await obj.add_variable(
                idx, name, ua.Variant([], STRING, is_array=True), varianttype=STRING
            )
        units = await obj.add_folder(idx, "Units")
        aliases: dict[str, Node] = {}
        for cpp in view["cpps"]:
            alias = cpp["unit"]
            if alias not in aliases:
                aliases[alias] = await units.add_object(idx, alias)
            node = await aliases[alias].add_object(idx, cpp["name"])
            key = f"{alias}/{cpp['name']}"
            nodes[f"{key}/PV"] = await node.add_variable(idx, "PV", 0.0, varianttype=DOUBLE)
            nodes[f"{key}/SP"] = await node.add_variable(idx, "SP", 0.0, varianttype=DOUBLE)
            await node.add_variable(idx, "EngineeringUnit", cpp["eu"], varianttype=STRING)
            await node.add_variable(idx, "Tag", cpp["tag"], varianttype=STRING)
            for label, band, side in _LIMITS:
                limit = cpp[band][side]
                if limit is not None:
                    await node.add_variable(idx, label, float(limit), varianttype=DOUBLE)
        self._nodes[batch_id] = nodes
        await self.update(batch_id, view)

    async def update(self, batch_id: str, view: dict[str, Any]) -> None:
        """Write a batch's current snapshot into its variables."""
        nodes = self._nodes[batch_id]
        values: dict[str, ua.DataValue] = {
            "State": _text(view["state"]),
            "Recipe": _text(view["recipe_name"]),
            "RecipeVersion": _text(view["recipe_version"]),
            "COI": _text(view["coi"]),
            "Why": _text(view["why"]),
            "ProcessTime": _number(view["process_time_s"]),
            "ActiveElements": _texts(f"{e['path']} {e['state']}" for e in view["elements"]),
            "OpenAlarms": _texts(
                alarm_line(a) for a in view["alarm_list"] if not a["acknowledged_by"]
            ),
            "OpenPrompts": _texts(
                f"{p['id']} {p['element']}: {p['text']}" for p in view["prompt_forms"]
            ),
        }
        for cpp in view["cpps"]:
            key = f"{cpp['unit']}/{cpp['name']}"
            values[f"{key}/PV"] = _number(cpp["pv"], cpp["quality"])
            values[f"{key}/SP"] = _number(cpp["sp"])
        for name, value in values.items():
            await self.server.write_attribute_value(nodes[name].nodeid, value)


def alarm_line(alarm: dict[str, Any]) -> str:
    """One alarm as one line of text (`AlarmRecord.to_dict` fields)."""
    state = "active" if alarm["active"] else "cleared"
    acked = f", acknowledged by {alarm['acknowledged_by']}" if alarm["acknowledged_by"] else ""
    return (
        f"{alarm['seq']} {alarm['level']} {alarm['monitor']}: {alarm['tag']} = "
        f"{_fmt(alarm['value'])} beyond {_fmt(alarm['limit'])} ({state}{acked})"
    )


def _text(value: Any) -> ua.DataValue:
    return ua.DataValue(ua.Variant("" if value is None else str(value), STRING))


def _texts(values: Any) -> ua.DataValue:
    return ua.DataValue(ua.Variant(list(values), STRING, is_array=True))


def _number(value: Any, quality: str = "good") -> ua.DataValue:
    if value is None:
        code = ua.StatusCodes.BadWaitingForInitialData
        return ua.DataValue(ua.Variant(0.0, DOUBLE), ua.StatusCode(ua.UInt32(code)))
    code = _QUALITY.get(quality, ua.StatusCodes.Uncertain)
    return ua.DataValue(ua.Variant(float(value), DOUBLE), ua.StatusCode(ua.UInt32(code)))


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"
