"""``nvme list -o json`` in every layout nvme-cli has printed, to controller inventory."""

from __future__ import annotations

import json
import re
from typing import Any

CONTROLLER = re.compile(r"^(?:/dev/)?(nvme\d+)(?:[cn]\d+)*$")
_KEYS = (("model", "ModelNumber"), ("serial", "SerialNumber"), ("firmware", "Firmware"))


def _excerpt(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, sort_keys=True)
    text = text.strip().replace("\n", " ")
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _info(entry: dict[str, Any]) -> dict[str, str]:
    return {key: str(entry.get(field) or "").strip() for key, field in _KEYS}


def _controller(name: Any, where: dict[str, Any]) -> str:
    """``nvmeN`` from a controller or namespace name; ValueError when it is not one."""
    match = CONTROLLER.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"cannot tell the controller of {_excerpt(where)}")
    return match.group(1)


def _subsystem(subsys: dict[str, Any], found: dict[str, dict[str, str]]) -> None:
    """Controllers of one subsystem (nvme-cli >= 2.11, or ``-v``)."""
    controllers = subsys.get("Controllers")
    if isinstance(controllers, list) and controllers:
        for ctrl in controllers:
            if not isinstance(ctrl, dict):
                raise ValueError(f"controller entry is not an object: {_excerpt(ctrl)}")
            found.setdefault(_controller(ctrl.get("Controller"), ctrl), _info(ctrl))
        return
    namespaces = subsys.get("Namespaces")
    if not isinstance(namespaces, list) or not namespaces:
        if isinstance(controllers, list):
            return  # a subsystem without controllers right now (e.g. fabrics reconnecting)
        raise ValueError(f"subsystem without Controllers or Namespaces: {_excerpt(subsys)}")
    for ns in namespaces:  # some releases leave Controllers out: derive them from names
        if not isinstance(ns, dict):
            raise ValueError(f"namespace entry is not an object: {_excerpt(ns)}")
        found.setdefault(_controller(ns.get("NameSpace"), ns), _info(subsys))


def parse_list(stdout: bytes) -> dict[str, dict[str, str]]:
    """Controller name -> model/serial/firmware; ValueError for output it cannot map.

    Layouts: nvme-cli 1.x and 2.0-2.10 print a flat ``Devices`` array of namespaces with
    ``DevicePath``; 2.11+ (and ``-v`` before) nest ``Devices[].Subsystems[].Controllers[]``;
    1.x ``-v`` lists subsystems with ``Controllers`` directly under ``Devices``.
    """
    try:
        doc = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"not JSON: {_excerpt(stdout.decode(errors='replace'))}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Devices"), list):
        raise ValueError(f"no 'Devices' array: {_excerpt(stdout.decode(errors='replace'))}")
    found: dict[str, dict[str, str]] = {}
    for entry in doc["Devices"]:
        if not isinstance(entry, dict):
            raise ValueError(f"device entry is not an object: {_excerpt(entry)}")
        if isinstance(entry.get("Subsystems"), list):
            for subsys in entry["Subsystems"]:
                if not isinstance(subsys, dict):
                    raise ValueError(f"subsystem entry is not an object: {_excerpt(subsys)}")
                _subsystem(subsys, found)
        elif "Controllers" in entry or "Subsystem" in entry:
            _subsystem(entry, found)
        elif "DevicePath" in entry or "Controller" in entry:
            path = entry.get("DevicePath") or entry.get("Controller")
            found.setdefault(_controller(path, entry), _info(entry))
        else:
            raise ValueError(f"unknown device entry layout: {_excerpt(entry)}")
    return found
