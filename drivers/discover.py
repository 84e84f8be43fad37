"""Drafting a device profile from an OPC UA server: browse its address space under
Objects and list every variable (node id, data type, access, engineering unit where
the server has EUInformation) and every method (with its input arguments).

The draft is valid profile TOML (:func:`draft_profile`); its tag names are made from
browse paths, for the engineer to rename to the equipment class's capabilities and
to delete what the class does not use.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field

from asyncua import Client, Node, ua

from drivers.errors import Disconnected, DriverError, DriverTimeout

MAX_NODES = 5000
"""Browsing stops after this many nodes (a bound for very large servers)."""


@dataclass(frozen=True, slots=True)
class FoundVariable:
    """A variable node: where it is and what it holds."""

    path: str
    node_id: ua.NodeId
    data_type: str
    writable: bool
    unit: str


@dataclass(frozen=True, slots=True)
class FoundMethod:
    """A method node with its owner and input arguments (name, type)."""

    path: str
    object_id: ua.NodeId
    node_id: ua.NodeId
    args: tuple[tuple[str, str], ...]


@dataclass
class Discovery:
    """What a browse found, and the server's namespace table."""

    url: str
    namespaces: list[str]
    variables: list[FoundVariable] = field(default_factory=list)
    methods: list[FoundMethod] = field(default_factory=list)


async def discover(url: str, limit_s: float = 5.0) -> Discovery:
    """Browse ``url`` (no security) and return what it serves; each call bounded by
    ``limit_s``."""
    client = Client(url, timeout=limit_s)
    try:
        await asyncio.wait_for(client.connect(), limit_s * 2)
    except TimeoutError:
        raise DriverTimeout(f"{url}: no answer within {limit_s * 2:.1f} s") from None
    except (OSError, ua.UaError) as exc:
        raise Disconnected(f"{url}: cannot connect ({exc})") from None
    try:
        found = Discovery(url, list(await client.get_namespace_array()))
        await _walk(client, client.nodes.objects, "", found, [0])
        return found
    except (OSError, ua.UaError, TimeoutError) as exc:
        raise DriverError(f"{url}: browsing failed: {exc}") from None
    finally:
        with contextlib.suppress(OSError, ua.UaError, TimeoutError):
            await asyncio.wait_for(client.disconnect(), limit_s)


async def _walk(client: Client, node: Node, path: str, found: Discovery, seen: list[int]) -> None:
    for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
        if seen[0] >= MAX_NODES:
            return
        seen[0] += 1
        if child.nodeid.NamespaceIndex == 0:
            continue  # the standard Server object and its kin
        name = (await child.read_browse_name()).Name
        here = f"{path}.{name}" if path else name
        node_class = await child.read_node_class()
        if node_class == ua.NodeClass.Variable:
            if await _is_property(child):
                continue
            found.variables.append(await _variable(client, child, here))
        elif node_class == ua.NodeClass.Method:
            found.methods.append(await _method(child, node, here))
        elif node_class == ua.NodeClass.Object:
            await _walk(client, child, here, found, seen)


async def _is_property(node: Node) -> bool:
    definition = await node.read_type_definition()
    return bool(
        definition is not None
        and definition.NamespaceIndex == 0
        and definition.Identifier == ua.ObjectIds.PropertyType
    )


async def _type_name(client: Client, type_id: ua.NodeId) -> str:
    if type_id.NamespaceIndex == 0 and isinstance(type_id.Identifier, int):
        try:
            return ua.VariantType(type_id.Identifier).name
        except ValueError:
            pass
    name = await client.get_node(type_id).read_browse_name()
    return str(name.Name)


async def _variable(client: Client, node: Node, path: str) -> FoundVariable:
    data_type = await _type_name(client, await node.read_data_type())
    level = await node.read_attribute(ua.AttributeIds.AccessLevel)
    access = level.Value.Value if level.Value is not None else 0
    unit = ""
    for prop in await node.get_properties():
        if (await prop.read_browse_name()).Name == "EngineeringUnits":
            info = await prop.read_value()
            text = getattr(info, "DisplayName", None)
            unit = str(getattr(text, "Text", "") or "")
    writable = bool(isinstance(access, int) and access & ua.AccessLevel.CurrentWrite.mask)
    return FoundVariable(path, node.nodeid, data_type, writable, unit)


async def _method(node: Node, owner: Node, path: str) -> FoundMethod:
    args: list[tuple[str, str]] = []
    for prop in await node.get_properties():
        if (await prop.read_browse_name()).Name == "InputArguments":
            for arg in await prop.read_value() or []:
                type_id = arg.DataType
                try:
                    type_name = ua.VariantType(type_id.Identifier).name
                except (ValueError, TypeError):
                    type_name = str(type_id.to_string())
                args.append((str(arg.Name), type_name))
    return FoundMethod(path, owner.nodeid, node.nodeid, tuple(args))


def _key(path: str) -> str:
    return re.sub(r"[^a-z0-9_.]+", "_", path.lower()).strip("_.")


def _node(node_id: ua.NodeId, namespaces: list[str], default: int) -> str:
    """The profile form of a node id: without ns= in the default namespace, else nsu=."""
    text = node_id.to_string()
    body = text.split(";", 1)[1] if text.startswith("ns=") else text
    if node_id.NamespaceIndex == default:
        return body
    return f"nsu={namespaces[node_id.NamespaceIndex]};{body}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draft_profile(found: Discovery, name: str = "draft") -> str:
    """A draft profile (TOML) of everything found: valid as it stands, to be mapped."""
    counts = Counter(v.node_id.NamespaceIndex for v in found.variables)
    default = counts.most_common(1)[0][0] if counts else 1
    lines = [
        f"# Draft device profile from {found.url} (cellbatch profile discover).",
        "# Rename each tag to the capability of the equipment class it implements (see",
        "# drivers/README.md), delete the rest, set equipment_class, check units and writable.",
        "",
        "[profile]",
        f"name = {_quote(name)}",
        'equipment_class = "TODO"',
        'protocol = "opcua"',
        f"namespace_uri = {_quote(found.namespaces[default])}",
        "",
        "[tags]",
    ]
    for var in found.variables:
        keys = [
            f"node = {_quote(_node(var.node_id, found.namespaces, default))}",
            f"type = {_quote(var.data_type)}",
            f"unit = {_quote(var.unit)}",
        ]
        if var.writable:
            keys.append("writable = true")
        lines.append(f"{_quote(_key(var.path))} = {{ {', '.join(keys)} }}")
    for method in found.methods:
        lines += [
            "",
            f"[methods.{_quote(_key(method.path))}]",
            f"object = {_quote(_node(method.object_id, found.namespaces, default))}",
            f"node = {_quote(_node(method.node_id, found.namespaces, default))}",
            "args = ["
            + ", ".join(f"{{ name = {_quote(n)}, type = {_quote(t)} }}" for n, t in method.args)
            + "]",
        ]
    return "\n".join(lines) + "\n"
