"""Typed keys of the state held on the ``web.Application``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from exporter.cache import MetricCache
from exporter.clock import Clock
from exporter.probe_cache import ProbeCache
from exporter.render import Renderer
from exporter.response_cache import ResponseCache
from exporter.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CACHE = web.AppKey("cache", MetricCache)
RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)
READY = web.AppKey("ready", asyncio.Event)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
RENDERER = web.AppKey("renderer", Renderer)
PROBES = web.AppKey("probes", ProbeCache)
