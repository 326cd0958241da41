"""The lineage graph as inline SVG: one band per job, its inputs on the left and outputs on the right.

A fixed three-column layout needs no layout engine or script, and reads well for the few jobs a local run
has. Every label is user data (resource names, aliases) and is escaped. Each edge carries its record count
from provenance; its tooltip has the last activity.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .links import resource_link

NODE_W, NODE_H, ROW_H = 220, 40, 56
INPUT_X, JOB_X, OUTPUT_X = 10, 370, 730
WIDTH = OUTPUT_X + NODE_W + 10


def job_label(job_rid: str) -> str:
    """A job rid ends in a uuid; its last 8 characters tell the jobs of a local run apart."""
    return f"job …{job_rid[-8:]}"


def _node(x: int, y: int, title: str, subtitle: str, css: str, href: str | None) -> str:
    short = title if len(title) <= 28 else title[:27] + "…"
    box = (
        f'<g class="node {css}"><title>{escape(title)}</title>'
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        f'<text x="{x + 10}" y="{y + 17}" class="name">{escape(short)}</text>'
        f'<text x="{x + 10}" y="{y + 33}" class="sub">{escape(subtitle)}</text></g>'
    )
    return f'<a href="{escape(href)}">{box}</a>' if href else box


def _edge(x1: int, y1: int, x2: int, y2: int, edge: dict[str, Any]) -> str:
    records = f"{edge['records']:,} records"
    last = edge["lastTime"] or "no activity yet"
    mid_x, mid_y = (x1 + x2) // 2, (y1 + y2) // 2
    return (
        f'<g class="edge" data-alias="{escape(edge["alias"])}"><title>{escape(edge["alias"])}: {records},'
        f" {edge['calls']} calls, last {escape(last)}</title>"
        f'<path d="M{x1},{y1} C{mid_x},{y1} {mid_x},{y2} {x2},{y2}"/>'
        f'<text x="{mid_x}" y="{mid_y - 6}" class="count">{records}</text></g>'
    )


def lineage_svg(edges: list[dict[str, Any]]) -> str:
    """input -> job -> output for every declared job alias; empty text when there are no jobs."""
    jobs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for edge in edges:
        jobs.setdefault(edge["jobRid"], {"input": [], "output": []})[edge["direction"]].append(edge)
    if not jobs:
        return ""
    parts: list[str] = []
    top = 10
    for job_rid, sides in jobs.items():
        rows = max(len(sides["input"]), len(sides["output"]), 1)
        band = rows * ROW_H
        job_y = top + (band - NODE_H) // 2
        subtitle = f"{len(sides['input'])} in · {len(sides['output'])} out"
        parts.append(_node(JOB_X, job_y, job_label(job_rid), subtitle, "job", None))
        for direction, x in (("input", INPUT_X), ("output", OUTPUT_X)):
            side = sides[direction]
            offset = (band - len(side) * ROW_H) // 2
            for i, edge in enumerate(side):
                y = top + offset + i * ROW_H + (ROW_H - NODE_H) // 2
                href = resource_link(edge["type"], edge["rid"])
                parts.append(_node(x, y, edge["name"], f"{edge['alias']} ({edge['type'] or '?'})", direction, href))
                if direction == "input":
                    parts.append(_edge(x + NODE_W, y + NODE_H // 2, JOB_X, job_y + NODE_H // 2, edge))
                else:
                    parts.append(_edge(JOB_X + NODE_W, job_y + NODE_H // 2, x, y + NODE_H // 2, edge))
        top += band + 16
    return (
        f'<svg class="lineage" viewBox="0 0 {WIDTH} {top}" width="{WIDTH}" height="{top}" role="img"'
        f' aria-label="lineage: inputs, jobs and outputs">{"".join(parts)}</svg>'
    )
