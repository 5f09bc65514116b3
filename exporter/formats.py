"""Content negotiation onto a closed set of formats, q-values honoured; gzip or identity."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import ALLOWUTF8, DOTS, UNDERSCORES, VALUES
from prometheus_client.registry import Collector
from prometheus_client.utils import parse_version

OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"
ESCAPINGS = (UNDERSCORES, DOTS, VALUES, ALLOWUTF8)
# Versions prometheus_client can write, per media type; a client's version maps onto these.
VERSIONS = {TEXT: ("0.0.4", "1.0.0"), OPENMETRICS: ("1.0.0", "2.0.0")}
# Items of a header looked at: enough for any real client, a bound on the work for any other.
MAX_ITEMS = 32


@dataclass(frozen=True)
class Format:
    """One of the few exposition formats served; ``body_key`` names its rendered bytes."""

    content_type: str
    encoder: Callable[[Collector], bytes]
    body_key: str

    @property
    def openmetrics(self) -> bool:
        """Whether the body ends with ``# EOF``."""
        return self.content_type.startswith(OPENMETRICS)


def _fields(content_type: str) -> tuple[str, str, str]:
    """Media type, version and escaping ("" when absent) of a content type."""
    media, *params = content_type.split(";")
    fields = {}
    for param in params:
        name, _, value = param.strip().partition("=")
        fields[name] = value
    return media.strip(), fields.get("version", ""), fields.get("escaping", "")


def _formats() -> dict[tuple[str, str, str], Format]:
    """Every format prometheus_client negotiates, by media type, version and escaping."""
    accepts = ["", OPENMETRICS]
    accepts += [f"{TEXT};version=1.0.0;escaping={escaping}" for escaping in ESCAPINGS]
    accepts += [
        f"{OPENMETRICS};version={version};escaping={escaping}"
        for version in VERSIONS[OPENMETRICS]
        for escaping in ESCAPINGS
    ]
    table = {}
    for accept in accepts:
        encoder, content_type = choose_encoder(accept)
        media, version, escaping = _fields(content_type)
        # Text 0.0.4 and 1.0.0 write the same bytes, as do OpenMetrics with and without
        # an escaping parameter (both default to underscores).
        kind = f"om{version}" if media == OPENMETRICS else "text"
        body_key = f"{kind}|{escaping or UNDERSCORES}"
        table[media, version, escaping] = Format(content_type, encoder, body_key)
    return table


_FORMATS = _formats()
FORMATS = tuple(_FORMATS.values())
BY_BODY_KEY = {fmt.body_key: fmt for fmt in FORMATS}
PLAIN = _FORMATS[TEXT, "0.0.4", ""]
# What Prometheus 2.x and 3.x send by default: the format to render before anyone asks.
PROMETHEUS = _FORMATS[OPENMETRICS, "1.0.0", UNDERSCORES]


def _major(version: str) -> int:
    """The major number of a version string (ValueError if it has none)."""
    major = parse_version(version)[0]
    if not isinstance(major, int):
        raise ValueError(f"not a version: {version[:20]!r}")
    return major


def _served_version(media: str, version: str) -> str:
    """The highest version of ``media`` served whose major version is at most the client's."""
    fitting = [v for v in VERSIONS[media] if _major(v) <= _major(version)]
    return fitting[-1] if fitting else VERSIONS[media][0]


def _quality(params: Iterable[str]) -> float:
    """The ``q`` parameter among ``params`` (1 when absent, 0 when unreadable)."""
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def _by_preference(header: str) -> list[tuple[str, float]]:
    """The header's items (first ``MAX_ITEMS``) with their q-values, best first, q=0 left out."""
    items = []
    for item in header.split(",", MAX_ITEMS)[:MAX_ITEMS]:
        q = _quality(item.split(";")[1:])
        if q > 0:
            items.append((item, q))
    return sorted(items, key=lambda pair: -pair[1])  # stable: equal q keep their order


def _served(item: str) -> Format | None:
    """The format one Accept item asks for, or ``None`` when it names none served."""
    media = item.split(";", 1)[0].strip().lower()
    if media in ("*/*", "text/*"):
        return PLAIN
    if media not in (TEXT, OPENMETRICS):
        return None
    try:
        _, content_type = choose_encoder(item)
        media_chosen, version, escaping = _fields(content_type)
        version = _served_version(media_chosen, version)
    except (TypeError, ValueError, KeyError):
        return None  # a version that is not a number (``version=abc``)
    if media_chosen != media:
        return None  # OpenMetrics below 1.0.0: prometheus_client cannot write it
    return _FORMATS.get((media_chosen, version, escaping), PLAIN)


def negotiate(accept: str) -> Format:
    """The served format ``accept`` prefers: best q first (q=0 never), else plain text.

    Each item is read by prometheus_client's ``choose_encoder``, which ignores q-values and
    echoes the client's version; a version becomes the nearest one served (1.0.5 -> 1.0.0,
    3.0 -> 2.0.0), so client input never makes a new format.
    """
    for item, _ in _by_preference(accept):
        fmt = _served(item)
        if fmt is not None:
            return fmt
    return PLAIN


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip: listed, or ``*``, with q > 0 (``gzip;q=0``: no)."""
    qualities: dict[str, float] = {}
    for item in accept_encoding.split(",", MAX_ITEMS)[:MAX_ITEMS]:
        coding, *params = item.split(";")
        qualities.setdefault(coding.strip().lower(), _quality(params))
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0
