"""Grafana dashboards for hwcache-exporter and their generator."""
