"""The plant file's ``[mqtt]`` table: where the controller publishes live batch data.

::

    [mqtt]
    url = "mqtt://127.0.0.1:1883"     # mqtt:// or mqtts:// (TLS); required
    prefix = "cellbatch/site/suite-a" # topic prefix (default cellbatch/<site>/<plant>)
    qos = 1                           # 0, 1 or 2 (default 1)
    buffer = 10000                    # events kept while the broker is away (default 10000)
    client_id = "cellbatch-suite-a"   # optional; default: generated per connection
    username = "cellbatch"            # optional; the password comes from the environment
    password_env = "CELLBATCH_MQTT_PASSWORD"

Errors name the file, line and column of the offending key (``FILE:LINE:COL: …``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BUFFER = 10_000
_KEYS = ("url", "prefix", "qos", "buffer", "client_id", "username", "password_env")
_LEVEL = re.compile(r"[^A-Za-z0-9_.-]+")


class MqttConfigError(Exception):
    """The ``[mqtt]`` table is malformed (message is ``FILE:LINE:COL: …``)."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and how the controller publishes (see the module docstring)."""

    url: str
    host: str
    port: int
    tls: bool
    prefix: str
    qos: int = 1
    buffer: int = DEFAULT_BUFFER
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = None


def topic_level(text: str) -> str:
    """``text`` as one safe topic level: no ``/``, ``+``, ``#``, spaces or ``$``."""
    return _LEVEL.sub("-", text).strip("-") or "_"


def locate(text: str, table: str, key: str | None) -> tuple[int, int]:
    """Line and column (1-based) of ``key = …`` inside ``[table]`` in TOML ``text``;
    the table header when the key is absent (or ``key`` is None); (1, 1) otherwise."""
    header = None
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped.split("#", 1)[0].strip() == f"[{table}]"
            if inside and header is None:
                header = (number, line.index("[") + 1)
            continue
        if inside and key is not None:
            match = re.match(rf"\s*{re.escape(key)}\s*=\s*", line)
            if match:
                return number, match.end() + 1
    return header or (1, 1)


def parse_mqtt(table: Any, text: str, src: str, *, site: str, plant: str) -> MqttConfig | None:
    """The ``[mqtt]`` table of a plant file (None when absent), checked."""
    if table is None:
        return None

    def fail(key: str | None, message: str) -> MqttConfigError:
        line, col = locate(text, "mqtt", key)
        return MqttConfigError(f"{src}:{line}:{col}: [mqtt] {message}")

    if not isinstance(table, dict):
        raise fail(None, "must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    url = table.get("url")
    if not isinstance(url, str) or not url:
        raise fail("url", "'url' is required, e.g. url = \"mqtt://127.0.0.1:1883\"")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise fail("url", f"'url' must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise fail("url", f"'url' has a bad port: {url!r}") from None
    default_prefix = "/".join(("cellbatch", topic_level(site or "site"), topic_level(plant)))
    prefix = table.get("prefix", default_prefix)
    if not isinstance(prefix, str) or not _good_prefix(prefix):
        raise fail(
            "prefix",
            f"'prefix' must be topic levels joined by '/' without '+', '#', empty levels "
            f"or a leading '$', got {prefix!r}",
        )
    qos = table.get("qos", 1)
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise fail("qos", f"'qos' must be 0, 1 or 2, got {qos!r}")
    buffer = table.get("buffer", DEFAULT_BUFFER)
    if not isinstance(buffer, int) or isinstance(buffer, bool) or not 1 <= buffer <= 10_000_000:
        raise fail("buffer", f"'buffer' must be an integer from 1 to 10000000, got {buffer!r}")
    strings = {}
    for key in ("client_id", "username", "password_env"):
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(key, f"{key!r} must be a non-empty string, got {value!r}")
        strings[key] = value
    return MqttConfig(
        url=url,
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        prefix=prefix,
        qos=qos,
        buffer=buffer,
        **strings,
    )


def _good_prefix(prefix: str) -> bool:
    levels = prefix.split("/")
    return (
        bool(prefix)
        and not prefix.startswith("$")
        and all(levels)
        and not any(c in prefix for c in "+#\0")
    )
