"""Mounted filesystems: size and free space per mountpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Regex


@register(
    "filesystems",
    description="Mounted filesystems: mountpoint, fstype, size and free space",
    interval="5m",
    timeout="30s",
    options=(
        CollectorOption(
            "mount-points-exclude",
            r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/.+)($|/)",
            "regex of mountpoints to skip",
            Regex(),
        ),
        CollectorOption(
            "fs-types-exclude",
            r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|"
            r"hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|"
            r"selinuxfs|squashfs|sysfs|tracefs)$",
            "regex of filesystem types to skip",
            Regex(),
        ),
    ),
)
class FilesystemsCollector(BlockingCollector):
    """psutil's partitions (mount table under --path.procfs), statvfs under --path.rootfs."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return size and free bytes of each real filesystem."""
        mounts_exclude = self.options.regex("mount-points-exclude")
        types_exclude = self.options.regex("fs-types-exclude")
        labels = ["device", "mountpoint", "fstype"]
        size = GaugeMetricFamily("hw_filesystem_size_bytes", "Filesystem size.", labels=labels)
        free = GaugeMetricFamily("hw_filesystem_free_bytes", "Free space.", labels=labels)
        avail = GaugeMetricFamily(
            "hw_filesystem_avail_bytes", "Space available to non-root users.", labels=labels
        )
        seen: set[str] = set()
        for part in self.ctx.psutil.disk_partitions(all=False):
            mountpoint = part.mountpoint
            if mountpoint in seen or (mounts_exclude and mounts_exclude.search(mountpoint)):
                continue
            if types_exclude and types_exclude.search(part.fstype):
                continue
            seen.add(mountpoint)
            path = os.path.join(str(self.ctx.rootfs), mountpoint.lstrip("/"))
            try:
                st = os.statvfs(path)
            except OSError:
                continue
            values = [part.device, mountpoint, part.fstype]
            size.add_metric(values, float(st.f_blocks * st.f_frsize))
            free.add_metric(values, float(st.f_bfree * st.f_frsize))
            avail.add_metric(values, float(st.f_bavail * st.f_frsize))
        return [size, free, avail]
