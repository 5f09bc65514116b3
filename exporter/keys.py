"""Typed keys of the state held on the ``web.Application``."""

from __future__ import annotations

import asyncio

from aiohttp import web
from cachetools import LRUCache

from collectors.toolkit.runner import CommandRunner
from exporter.cache import MetricCache
from exporter.clock import Clock
from exporter.response_cache import ResponseCache
from exporter.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CACHE = web.AppKey("cache", MetricCache)
RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)
RUNNER = web.AppKey("runner", CommandRunner)
READY = web.AppKey("ready", asyncio.Event)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
# Rendered freshness block per (generation, format body key, collectors, second).
FRAMEWORK_RENDERS: web.AppKey[LRUCache[tuple[int, str, tuple[str, ...], int], bytes]] = web.AppKey(
    "framework_renders"
)
# CRC-32 and length of the collectors' part of a body, per format and entry generations.
BODY_CRCS: web.AppKey[LRUCache[tuple[str, tuple[tuple[str, int], ...]], tuple[int, int]]] = (
    web.AppKey("body_crcs")
)
