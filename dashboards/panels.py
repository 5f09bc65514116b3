"""Grafana panel builders: stat, table, bar gauge and time series on a Prometheus datasource."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query is restricted to the selected jobs and instances.
SEL = 'job=~"$job",instance=~"$instance"'
RED_ABOVE_ZERO: list[Json] = [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Json:
    """One Prometheus query of a panel."""
    query: Json = {"datasource": DATASOURCE, "expr": expr, "refId": ref}
    if legend:
        query["legendFormat"] = legend
    if instant:
        query.update(instant=True, range=False, format="table")
    return query


def _panel(kind: str, title: str, description: str, targets: list[Json], **extra: Any) -> Json:
    """Fields common to every panel (id and gridPos are set by the layout)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        **extra,
    }


def _defaults(unit: str, steps: list[Json] | None, **custom: Any) -> Json:
    """fieldConfig with a unit and thresholds."""
    defaults: Json = {"unit": unit}
    if steps is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
        defaults["color"] = {"mode": "thresholds"}
    if custom:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": []}


def stat(
    title: str, description: str, expr: str, unit: str = "none", steps: list[Json] | None = None
) -> Json:
    """A single number, coloured by thresholds (red above zero unless told)."""
    return _panel(
        "stat",
        title,
        description,
        [target(expr, instant=True)],
        fieldConfig=_defaults(unit, steps if steps is not None else RED_ABOVE_ZERO),
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value",
        },
    )


def table(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    hide: tuple[str, ...] = ("Time", "__name__"),
    unit: str = "none",
) -> Json:
    """An instant table; several (column name, query) pairs are merged on their labels."""
    refs = [chr(ord("A") + i) for i in range(len(queries))]
    rename = {
        f"Value #{ref}" if len(queries) > 1 else "Value": name
        for ref, (name, _) in zip(refs, queries, strict=True)
    }
    return _panel(
        "table",
        title,
        description,
        [target(expr, ref=ref, instant=True) for ref, (_, expr) in zip(refs, queries, strict=True)],
        fieldConfig=_defaults(unit, None),
        options={"showHeader": True, "cellHeight": "sm"},
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {"excludeByName": dict.fromkeys(hide, True), "renameByName": rename},
            },
        ],
    )


def bargauge(
    title: str,
    description: str,
    expr: str,
    legend: str,
    unit: str,
    steps: list[Json],
    maximum: float | None = None,
) -> Json:
    """Horizontal bars, one per series (current value), coloured by thresholds."""
    defaults = _defaults(unit, steps)
    defaults["defaults"]["min"] = 0
    if maximum is not None:
        defaults["defaults"]["max"] = maximum
    return _panel(
        "bargauge",
        title,
        description,
        [target(expr, legend, instant=True)],
        fieldConfig=defaults,
        options={
            "orientation": "horizontal",
            "displayMode": "gradient",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    )


def timeseries(title: str, description: str, queries: list[tuple[str, str]], unit: str) -> Json:
    """Lines over time; (query, legend) pairs. Points are drawn, so one scrape shows."""
    refs = [chr(ord("A") + i) for i in range(len(queries))]
    return _panel(
        "timeseries",
        title,
        description,
        [target(expr, legend, ref) for ref, (expr, legend) in zip(refs, queries, strict=True)],
        fieldConfig=_defaults(unit, None, showPoints="always", pointSize=4, spanNulls=True),
        options={
            "legend": {
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "max"],
            }
        },
    )


def row(title: str) -> Json:
    """A row header grouping the panels after it."""
    return {"type": "row", "title": title, "collapsed": False, "panels": []}
