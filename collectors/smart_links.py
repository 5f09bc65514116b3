"""Disk link speeds from smartctl's JSON: SATA ``interface_speed``, SAS phy link rates."""

from __future__ import annotations

import re
from typing import Any

from collectors.smart_parse import number

SAS_RATE = re.compile(r"\b(\d+(?:\.\d+)?) Gbps\b")


def sata_speed(doc: dict[str, Any], kind: str) -> float | None:
    """``interface_speed.<kind>`` (``current``, ``max``) in bytes per second."""
    units = number(doc, "interface_speed", kind, "units_per_second")
    bits = number(doc, "interface_speed", kind, "bits_per_unit")
    return None if units is None or bits is None else units * bits / 8


def sas_speed(doc: dict[str, Any]) -> float | None:
    """Fastest negotiated link rate of the disk's SAS phys (``--log=sasphy``), bytes/s.

    smartctl prints it as text per phy (``phy enabled; 12 Gbps``); a phy with nothing
    attached says ``phy enabled; unknown`` and is left out.
    """
    rates = [
        float(found.group(1)) * 1e9 / 8
        for key, port in doc.items()
        if key.startswith("scsi_sas_port_") and isinstance(port, dict)
        for phy in port.values()
        if isinstance(phy, dict)
        and (found := SAS_RATE.search(str(phy.get("negotiated_logical_link_rate", ""))))
    ]
    return max(rates) if rates else None


def current_speed(doc: dict[str, Any]) -> float | None:
    """The negotiated link speed: SATA's current speed, else the SAS phys' fastest."""
    speed = sata_speed(doc, "current")
    return speed if speed is not None else sas_speed(doc)


def max_speed(doc: dict[str, Any]) -> float | None:
    """The drive's fastest SATA speed (smartctl prints no maximum for SAS phys)."""
    return sata_speed(doc, "max")
