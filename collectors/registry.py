"""Self-registration of collectors: flags, docs and /cache/stats all derive from here."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from collectors.base import Collector, CollectorContext
from collectors.toolkit.options import CollectorOption

CollectorFactory = Callable[[CollectorContext], Collector]


@dataclass(frozen=True)
class CollectorSpec:
    """Everything the framework knows about one collector."""

    name: str
    factory: CollectorFactory
    description: str
    default_enabled: bool = True
    interval: str = "1h"
    timeout: str = "60s"
    tool: str | None = None
    options: tuple[CollectorOption, ...] = ()
    # Family-name prefixes it serves besides its own hw_<name> (smart: the NVMe health log).
    also_exports: tuple[str, ...] = ()


REGISTRY: dict[str, CollectorSpec] = {}


def register(
    name: str,
    *,
    description: str,
    default_enabled: bool = True,
    interval: str = "1h",
    timeout: str = "60s",
    tool: str | None = None,
    options: tuple[CollectorOption, ...] = (),
    also_exports: tuple[str, ...] = (),
) -> Callable[[type[Collector]], type[Collector]]:
    """Class decorator adding a collector to the registry."""

    def decorate(cls: type[Collector]) -> type[Collector]:
        if name in REGISTRY and REGISTRY[name].factory is not cls:
            raise ValueError(f"collector {name!r} registered twice")
        REGISTRY[name] = CollectorSpec(
            name, cls, description, default_enabled, interval, timeout, tool, options, also_exports
        )
        cls.declared_options = options  # parsed once per collector by Collector.__init__
        return cls

    return decorate


def load_all() -> dict[str, CollectorSpec]:
    """Import every module in the collectors package and return the filled registry."""
    import collectors

    for module in pkgutil.iter_modules(collectors.__path__):
        if module.name not in {"base", "registry", "toolkit"} and not module.name.startswith("_"):
            importlib.import_module(f"collectors.{module.name}")
    return dict(sorted(REGISTRY.items()))
