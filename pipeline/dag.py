"""``paretohqd dag``: the stage graph of a config as text, Mermaid or Graphviz DOT.

Edges run from the stage that writes an artifact to each stage that reads it, labelled with
the artifact's name, in the order the runner runs the stages (topological). The graph is the
config's: stages a config turns off are not in it, as they are not in ``status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paretohqd.stage import Stage

FORMATS = ("text", "mermaid", "dot", "json")


def edges(stages: Sequence[Stage]) -> list[tuple[str, str, str]]:
    """``(producer, consumer, artifact)`` for every input of every stage."""
    producer = {a.name: s.name for s in stages for a in s.outputs}
    return [(producer[name], s.name, name) for s in stages for name in s.inputs]


def merged(stages: Sequence[Stage]) -> list[tuple[str, str, str]]:
    """:func:`edges` with one edge per stage pair, its label every artifact it carries."""
    labels: dict[tuple[str, str], list[str]] = {}
    for a, b, art in edges(stages):
        labels.setdefault((a, b), []).append(art)
    return [(a, b, ", ".join(arts)) for (a, b), arts in labels.items()]


def as_data(stages: Sequence[Stage]) -> dict[str, Any]:
    """Stages with what they read and write, and the edges, as JSON-ready data."""
    return {
        "stages": [
            {
                "stage": s.name,
                "description": s.description,
                "reads": list(s.inputs),
                "writes": [a.name for a in s.outputs],
            }
            for s in stages
        ],
        "edges": [{"from": a, "to": b, "artifact": art} for a, b, art in edges(stages)],
    }


def render(stages: Sequence[Stage], fmt: str) -> str:
    """The graph in ``fmt`` (one of :data:`FORMATS` but json)."""
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        lines += [f"  {s.name}[{s.name}]" for s in stages]
        lines += [f"  {a} -->|{art}| {b}" for a, b, art in merged(stages)]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph paretohqd {", "  rankdir=LR;", "  node [shape=box];"]
        lines += [f'  "{s.name}";' for s in stages]
        lines += [f'  "{a}" -> "{b}" [label="{art}"];' for a, b, art in merged(stages)]
        return "\n".join([*lines, "}"]) + "\n"
    producer = {a.name: s.name for s in stages for a in s.outputs}
    width = max((len(s.name) for s in stages), default=0)
    out = []
    for s in stages:
        reads = ", ".join(f"{n} ({producer[n]})" for n in s.inputs) or "-"
        writes = ", ".join(a.name for a in s.outputs)
        out.append(f"{s.name:<{width}}  reads {reads}; writes {writes}")
    return "\n".join(out) + "\n"
