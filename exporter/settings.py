"""Runtime settings of the exporter, built from the command line (or directly by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from exporter.probe_config import ProbeConfig
from exporter.script_config import ScriptSettings


@dataclass(frozen=True)
class CollectorSettings:
    """One enabled collector's configuration."""

    name: str
    interval: float
    timeout: float
    options: dict[str, str] = field(default_factory=dict)
    script: ScriptSettings | None = None  # a configured script, not a built-in collector


@dataclass(frozen=True)
class Settings:
    """Everything the app factory needs."""

    collectors: tuple[CollectorSettings, ...]
    listen_address: str = ":9847"
    telemetry_path: str = "/metrics"
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")
    response_cache: bool = True
    response_cache_max_entries: int = 1000
    response_cache_max_bytes: int = 64 * 1024 * 1024
    response_cache_ttl: float = 0.0  # 0: until the data changes or expires
    scrape_timeout_offset: float = 0.5
    max_scrape_wait: float = 10.0
    error_retry_interval: float = 60.0
    invalidate_min_interval: float = 60.0
    invalidate_enabled: bool = True
    max_requests: int = 40
    max_connections: int = 512
    read_header_timeout: float = 10.0
    idle_timeout: float = 75.0
    write_timeout: float = 30.0
    web_config_file: Path | None = None
    tool_max_output: int = 16 * 1024 * 1024
    cache_dir: Path | None = None
    # Default collectors left out at startup, with the reason (e.g. their tool is missing).
    skipped: tuple[tuple[str, str], ...] = ()
    probe: ProbeConfig | None = None  # remote-target modules of --config.file (/probe)
