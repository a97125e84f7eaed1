"""What the template sandbox's bounds cost per message rendered.

    PYTHONPATH=$PWD .venv/bin/python bench/render.py [--rounds N] [--repeat N]

Renders every shipped template (SMS and email, every language) with one full
context, through `TemplateSet` (the bounded, immutable sandbox the dispatcher,
the check and the preview use) and through a plain `jinja2.Environment` with
the same loader and options, in alternating rounds so that a slow spell of the
machine hits both alike. Prints each one's median µs per render and their
ratio: the price of counting steps, timing the render and sizing values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from orchestrator.event import Channel
from orchestrator.templates import TemplateSet, _block

ROOT = Path(__file__).resolve().parent.parent / "templates"
_PORTAL = "https://portal.example.org"
# Every name a shipped template reads (what `render_context` gives an email).
CONTEXT: dict[str, Any] = {
    "org": {"name": "Example Health", "phone": "+15555550100", "portal_url": _PORTAL},
    "appointment": {
        "when": "Sat Sep 30, 10:30 AM",
        "date": "Saturday, September 30, 2026",
        "time": "10:30 AM",
        "location": "Clinic 2",
        "provider": "Dr. Example",
        "service": "Cardiology",
    },
    "encounter": {"discharged_on": "Saturday, September 30, 2026"},
    "recipient": {"is_caregiver": False, "relationship": None},
    "links": {
        name: f"{_PORTAL}/{name[0]}/abcdef123456"
        for name in ("intake", "directions", "reschedule", "survey", "guide")
    },
}

Template = tuple[Channel, str, str]


def shipped() -> list[Template]:
    found = []
    for path in sorted(ROOT.rglob("*.j2")):
        channel, language, name = path.relative_to(ROOT).parts
        found.append((Channel(channel), language, name.removesuffix(".j2")))
    return found


def plain_renderer() -> Callable[[Template], object]:
    """The same templates through Jinja2 without the sandbox or its bounds."""
    options: dict[str, Any] = {
        "loader": jinja2.FileSystemLoader(str(ROOT)),
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    text = jinja2.Environment(autoescape=False, **options)
    html = jinja2.Environment(autoescape=True, **options)

    def render(template: Template) -> object:
        channel, language, name = template
        path = f"{channel.value}/{language}/{name}.j2"
        plain = text.get_template(path)
        if channel is Channel.SMS:
            return plain.render(CONTEXT).strip()
        return (
            _block(plain, "text", CONTEXT),
            _block(plain, "subject", CONTEXT),
            _block(html.get_template(path), "html", CONTEXT),
        )

    return render


def per_render(
    render: Callable[[Template], object], templates: list[Template], repeat: int
) -> float:
    """µs per render over `repeat` passes through every template."""
    started = time.perf_counter()
    for _ in range(repeat):
        for template in templates:
            render(template)
    return (time.perf_counter() - started) / (repeat * len(templates)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the templates a round")
    args = parser.parse_args()

    templates = shipped()
    bounded = TemplateSet(ROOT)

    def sandboxed(template: Template) -> object:
        return bounded.render(*template, CONTEXT)

    plain = plain_renderer()
    # Compile everything first (and fail here if the context lacks a name).
    for template in templates:
        sandboxed(template)
        plain(template)
    figures: dict[str, list[float]] = {"bounded sandbox": [], "plain Environment": []}
    for _ in range(args.rounds):
        figures["bounded sandbox"].append(per_render(sandboxed, templates, args.repeat))
        figures["plain Environment"].append(per_render(plain, templates, args.repeat))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"{len(templates)} templates, {args.rounds} alternating rounds of {args.repeat} passes")
    for name, value in medians.items():
        print(f"{name:>18}: {value:8.1f} µs/render (median)")
    ratio = medians["bounded sandbox"] / medians["plain Environment"]
    print(f"ratio bounded/plain: {ratio:.2f}")


if __name__ == "__main__":
    main()
