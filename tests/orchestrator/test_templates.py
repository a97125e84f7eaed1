"""Templates typed in the console are hostile until rendered: what bounds their cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import TemplateError
from orchestrator.event import Channel
from orchestrator.templates import MAX_LOOP_STEPS, TemplateSet

NESTED = "Hello\n{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def _render(tmp_path: Path, text: str, channel: Channel = Channel.SMS, **context: object) -> str:
    name = "x"
    templates = TemplateSet(tmp_path, {f"{channel.value}/en/{name}.j2": text})
    return templates.render(channel, "en", name, context).body


def test_loops_nested_in_each_other_stop_at_the_budget_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, NESTED)

    assert str(raised.value) == (
        f"template sms/en/x.j2 line 2: too expensive: more than {MAX_LOOP_STEPS:,} loop steps "
        "(loops nested in each other multiply)"
    )


def test_the_budget_is_per_render_so_a_set_renders_again_after_a_template_exceeded_it(
    tmp_path: Path,
) -> None:
    templates = TemplateSet(
        tmp_path,
        {"sms/en/costly.j2": NESTED, "sms/en/list.j2": "{% for i in range(9000) %}.{% endfor %}"},
    )
    with pytest.raises(TemplateError):
        templates.render(Channel.SMS, "en", "costly", {})

    for _ in range(3):  # 27,000 steps in all, 9,000 per render
        assert templates.render(Channel.SMS, "en", "list", {}).body == "." * 9000


def test_a_loop_a_message_needs_renders_as_before(tmp_path: Path) -> None:
    text = (
        "{% for x in items %}{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}; "
        "{% for k, v in d.items() %}{{ k }}={{ v }}{% else %}none{% endfor %}; "
        "{% for x in items if x > 1 %}{{ loop.index }}/{{ loop.length }} {% endfor %}"
    )

    assert _render(tmp_path, text, items=[1, 2, 3], d={}) == "1, 2, 3; none; 1/2 2/2"


def test_macros_calling_themselves_in_loops_stop_at_the_budget(tmp_path: Path) -> None:
    text = (
        "{% macro f(n) %}{% for a in range(2) %}{% if n < 40 %}{{ f(n + 1) }}{% endif %}"
        "{% endfor %}{% endmacro %}{{ f(0) }}"
    )
    with pytest.raises(TemplateError, match="line 1: too expensive"):
        _render(tmp_path, text)


def test_an_email_block_counts_against_the_same_budget(tmp_path: Path) -> None:
    text = (
        "{% block subject %}s{% endblock %}{% block text %}"
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"
        "{% endblock %}{% block html %}h{% endblock %}"
    )
    with pytest.raises(TemplateError, match=r"email/en/x\.j2 line 1: too expensive"):
        _render(tmp_path, text, Channel.EMAIL)


def test_a_recursive_loop_is_refused(tmp_path: Path) -> None:
    text = "{% for a in items recursive %}{{ loop(items) }}{% endfor %}"
    with pytest.raises(TemplateError, match="line 1: a recursive loop is not allowed"):
        _render(tmp_path, text, items=[1, 2])


@pytest.mark.parametrize(
    "text",
    [
        "{{ ('x' * 1000).replace('x', 'x' * 1000) }}",
        "{{ ('ab' * 1000).replace('', 'x' * 100) }}",
        "{{ 'x'.center(10**9) }}",
        "{{ 'x'.ljust(200000) }}",
        "{{ 'x'.zfill(200000) }}",
        "{{ ('\\t' * 1000).expandtabs(1000) }}",
    ],
)
def test_a_string_method_that_would_grow_past_the_limit_is_refused(
    tmp_path: Path, text: str
) -> None:
    with pytest.raises(TemplateError, match="not allowed: a string longer than 100000"):
        _render(tmp_path, text)


def test_string_methods_within_the_limit_render(tmp_path: Path) -> None:
    text = "{{ 'a-b'.replace('-', ' and ') }}|{{ 'x'.center(5) }}|{{ '7'.zfill(3) }}"

    assert _render(tmp_path, text) == "a and b|  x  |007"


def test_a_template_compiled_once_renders_in_every_set_with_its_own_text(tmp_path: Path) -> None:
    first = TemplateSet(tmp_path, {"sms/en/x.j2": "one"})
    second = TemplateSet(tmp_path, {"sms/en/x.j2": "two"})
    again = TemplateSet(tmp_path, {"sms/en/x.j2": "one"})

    bodies = [s.render(Channel.SMS, "en", "x", {}).body for s in (first, second, again)]

    assert bodies == ["one", "two", "one"]


def test_the_same_edits_over_a_set_give_the_same_set_and_other_edits_another(
    tmp_path: Path,
) -> None:
    base = TemplateSet(tmp_path)

    assert base.over({"sms/en/x.j2": "a"}) is base.over({"sms/en/x.j2": "a"})
    assert base.over({"sms/en/x.j2": "b"}).render(Channel.SMS, "en", "x", {}).body == "b"
