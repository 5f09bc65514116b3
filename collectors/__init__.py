"""Collectors: one module each, registered with ``collectors.registry.register``."""
