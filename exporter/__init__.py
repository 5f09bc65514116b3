"""hwcache-exporter: a Prometheus exporter that caches slow hardware collectors."""

__version__ = "0.2.0"
