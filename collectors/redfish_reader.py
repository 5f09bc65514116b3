"""Reading one Redfish service for a poll: collections bounded, unreadable parts skipped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from collectors.base import CollectorError, SkipItem
from collectors.redfish_client import NotFound, RedfishClient
from collectors.redfish_families import link

MAX_MEMBERS = 256  # members read per collection; the rest are counted as skipped
EXPAND = "?$expand=.($levels=1)"  # a collection with its members inline (DSP0266 query)
log = logging.getLogger(__name__)


class Reader:
    """GETs for one poll through ``client``; what cannot be read is reported to ``skip``."""

    def __init__(self, client: RedfishClient, skip: SkipItem) -> None:
        self.client = client
        self.skip = skip
        self.expand = False  # the service root says it expands collections (see expands())

    async def get(self, path: str) -> dict[str, Any]:
        """A resource that the poll needs (errors propagate)."""
        return await self.client.get(path)

    async def members(self, path: str) -> list[dict[str, Any]]:
        """Every member of a collection the poll needs (its first MAX_MEMBERS; errors propagate)."""
        paths = self._bounded(path, await self.client.get(path))
        return list(await asyncio.gather(*(self.client.get(p) for p in paths)))

    async def optional(self, resource: dict[str, Any], key: str) -> dict[str, Any] | None:
        """A linked sub-resource; None when absent, or unreadable (then one skipped item)."""
        path = link(resource, key)
        return None if path is None else await self._read(path, missing_ok=True)

    async def optional_members(
        self, resource: dict[str, Any], key: str, exclude: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """The readable members of a linked collection, except the paths in ``exclude``.

        An unreadable member is one skipped item; the others are still read.
        """
        path = link(resource, key)
        collection = await self._expanded(path) if path is not None and self.expand else None
        if collection is None:
            collection = await self.optional(resource, key)
        if path is None or collection is None:
            return []
        members = collection.get("Members")
        inline = {  # expanded members (a resource has an Id; a bare link has not)
            m["@odata.id"]: m
            for m in (members if isinstance(members, list) else [])
            if isinstance(m, dict) and isinstance(m.get("@odata.id"), str) and "Id" in m
        }
        wanted = [p for p in _member_paths(collection) if p.rstrip("/") not in exclude]
        paths = self._bounded(path, {"Members": [{"@odata.id": p} for p in wanted]})
        found = await asyncio.gather(
            *(_ready(inline[p]) if p in inline else self._read(p, False) for p in paths)
        )
        return [member for member in found if member is not None]

    async def _expanded(self, path: str) -> dict[str, Any] | None:
        """The collection with its members inline in one GET; None when the service cannot."""
        try:
            return await self.client.get(path + EXPAND)
        except CollectorError as exc:  # too large, refused: the members are read one by one
            log.debug("%s: %s", self.client.base, exc)
            return None

    async def linked(self, links: Any) -> list[dict[str, Any]]:
        """The readable resources of an inline array of links (``"Drives": [{...}]``)."""
        paths = self._bounded("a link array", {"Members": links})
        found = await asyncio.gather(*(self._read(p, missing_ok=False) for p in paths))
        return [member for member in found if member is not None]

    def _bounded(self, path: str, collection: dict[str, Any]) -> list[str]:
        paths = _member_paths(collection)
        for extra in paths[MAX_MEMBERS:]:
            self.skip(extra, f"more than {MAX_MEMBERS} members in {path}")
        return paths[:MAX_MEMBERS]

    async def _read(self, path: str, missing_ok: bool) -> dict[str, Any] | None:
        try:
            return await self.client.get(path)
        except NotFound as exc:
            if not missing_ok:  # listed by the service, yet not there
                self.skip(path, str(exc))
            return None
        except CollectorError as exc:
            self.skip(path, str(exc))
            return None


def expands(root: dict[str, Any]) -> bool:
    """Whether the service root says the service expands subordinate resources by levels."""
    features = root.get("ProtocolFeaturesSupported")
    query = features.get("ExpandQuery") if isinstance(features, dict) else None
    return isinstance(query, dict) and query.get("NoLinks") is True and query.get("Levels") is True


async def _ready(resource: dict[str, Any]) -> dict[str, Any] | None:
    return resource


def _member_paths(collection: dict[str, Any]) -> list[str]:
    members = collection.get("Members")
    links = (
        [m.get("@odata.id") for m in members if isinstance(m, dict)]
        if isinstance(members, list)
        else []
    )
    return [p for p in links if isinstance(p, str)]
