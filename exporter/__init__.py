"""hwcache-exporter: a Prometheus exporter that caches slow hardware collectors."""

__version__ = "0.1.0"
