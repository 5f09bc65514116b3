"""DMI/SMBIOS inventory (BIOS, system, board, chassis) from sysfs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, NotApplicable, read_text
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Flag

# label name -> file under class/dmi/id
FIELDS: dict[str, str] = {
    "bios_vendor": "bios_vendor",
    "bios_version": "bios_version",
    "bios_date": "bios_date",
    "bios_release": "bios_release",
    "system_vendor": "sys_vendor",
    "product_name": "product_name",
    "product_version": "product_version",
    "product_family": "product_family",
    "product_sku": "product_sku",
    "board_vendor": "board_vendor",
    "board_name": "board_name",
    "board_version": "board_version",
    "chassis_vendor": "chassis_vendor",
    "chassis_type": "chassis_type",
    "chassis_version": "chassis_version",
}

# Identify one physical machine: exported only with --collector.dmi.serials.
SERIAL_FIELDS: dict[str, str] = {
    "product_serial": "product_serial",
    "product_uuid": "product_uuid",
    "board_serial": "board_serial",
    "board_asset_tag": "board_asset_tag",
    "chassis_serial": "chassis_serial",
    "chassis_asset_tag": "chassis_asset_tag",
}


def clean_value(text: str) -> str:
    """Drop control characters that firmware sometimes leaves in DMI strings."""
    return "".join(char for char in text if char.isprintable()).strip()


def read_fields(directory: Path, fields: dict[str, str]) -> dict[str, str]:
    """Readable, non-empty fields as label name -> value."""
    labels = {}
    for label, filename in fields.items():
        text = read_text(directory / filename)
        value = clean_value(text) if text is not None else ""
        if value:
            labels[label] = value
    return labels


@register(
    "dmi",
    description="DMI/SMBIOS inventory: BIOS, system, board and chassis strings",
    interval="24h",
    timeout="30s",
    options=(
        CollectorOption(
            "serials",
            "false",
            "also export serial numbers, product UUID and asset tags (sensitive; "
            "usually readable by root only)",
            Flag(),
        ),
    ),
)
class DmiCollector(BlockingCollector):
    """``hw_dmi_info`` from /sys/class/dmi/id."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Read the DMI strings; serials only when the ``serials`` option is on."""
        directory = self.ctx.sysfs / "class" / "dmi" / "id"
        if not directory.is_dir():
            raise NotApplicable(f"{directory} not found (no DMI/SMBIOS firmware tables)")
        labels = read_fields(directory, FIELDS)
        if self.options.flag("serials"):
            labels |= read_fields(directory, SERIAL_FIELDS)
        if not labels:
            raise NotApplicable(f"no readable DMI fields in {directory}")
        info = InfoMetricFamily("hw_dmi", "DMI/SMBIOS strings from /sys/class/dmi/id.")
        info.add_metric([], labels)
        return [info]
