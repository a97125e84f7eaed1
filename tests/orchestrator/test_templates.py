"""Templates typed in the console are hostile until rendered: what bounds their cost."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

import pytest

from orchestrator import templates as templates_module
from orchestrator.errors import TemplateError
from orchestrator.event import Channel
from orchestrator.templates import MAX_LOOP_STEPS, MAX_OUTPUT, TemplateSet

NESTED = "Hello\n{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def _render(tmp_path: Path, text: str, channel: Channel = Channel.SMS, **context: object) -> str:
    name = "x"
    templates = TemplateSet(tmp_path, {f"{channel.value}/en/{name}.j2": text})
    return templates.render(channel, "en", name, context).body


def test_loops_nested_in_each_other_stop_at_the_budget_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, NESTED)

    assert str(raised.value) == (
        f"template sms/en/x.j2 line 2: too expensive: more than {MAX_LOOP_STEPS:,} steps "
        "(loops, macro calls and includes together: nested ones multiply)"
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
    with pytest.raises(TemplateError, match="too expensive: a string longer than 100,000 char"):
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


# Each ends quickly with one problem; none makes the value it describes.
HOSTILE = [
    # Macros and includes: no loop at all.
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(30) }}",
    "{% macro m0() %}x{% endmacro %}"  # nested, not recursive: 10 levels of 10 calls
    + "".join(
        f"{{% macro m{i}() %}}" + f"{{{{ m{i - 1}() }}}}" * 10 + "{% endmacro %}"
        for i in range(1, 10)
    )
    + "{{ m9() }}",
    "{% macro f() %}{{ caller() }}{{ caller() }}{% endmacro %}"
    + "{% call f() %}" * 20
    + "x"
    + "{% endcall %}" * 20,
    "{% set n = namespace(i=0) %}{% set n.i = n.i + 1 %}"
    "{% include 'sms/en/x.j2' %}{% include 'sms/en/x.j2' %}",
    # Filters.
    "{% set n = 200000000 %}{{ 'x'|center(n) }}",
    "{% set n = 200000000 %}{{ 'x'|indent(n, true) }}",
    "{{ ('a\n' * 50000)|indent('x' * 1000, true) }}",
    "{% set n = 200000000 %}{{ '%*d'|format(n, 1) }}",
    "{% set s = 'x' * 100000 %}{{ s|replace('x', s[:2000]) }}",
    "{{ ('x' * 100000)|wordwrap(1, true, 'y' * 1000) }}",
    "{{ (['a'] * 1000)|join('y' * 100000) }}",
    "{{ [1]|batch(200000000, 'x')|list }}",
    # The `%` operator, str.format, join, translate.
    "{% set n = 200000000 %}{{ '%*d' % (n, 1) }}",
    "{{ '%200000000d' % 1 }}",
    "{{ '{:>200000000}'.format(1) }}",
    "{{ '{:>{}}'.format(1, 200000000) }}",
    "{{ '{x:>200000000}'.format_map({'x': 1}) }}",
    "{% set s = 'x' * 100000 %}{{ 'ab'.join([s] * 1000) }}",
    "{% set s = 'x' * 100000 %}{{ ('a' * 100000).translate({97: s}) }}",
    # Doubling, with `~`, `+` and `*`; mutating a list.
    "{% set s = 'x' * 100000 %}" + "{% set s = s ~ s %}" * 12 + "{{ s|length }}",
    "{% set l = ['x' * 1000] %}" + "{% set l = l + l %}" * 24 + "{{ l|length }}",
    "{% set l = [1] %}{% for i in range(24) %}{{ l.extend(l) }}{% endfor %}{{ l|length }}",
    "{{ ['x' * 100000] * 1000 }}",
    "{% set n = 2 ** 64 %}" + "{% set n = n * n %}" * 30 + "{{ n > 1 }}",
    # Output: within every other bound, too much of it.
    "{% set s = 'x' * 100000 %}{% for i in range(2000) %}{{ s }}{% endfor %}",
    # lipsum is not there.
    "{{ lipsum(20000, false, 20, 101) }}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_template_is_one_clear_problem(tmp_path: Path, text: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, text)

    assert time.monotonic() - started < 30  # a stall, not a timing: each takes milliseconds
    said = str(raised.value)
    assert said.startswith("template sms/en/x.j2")
    assert len(said) < 200
    assert "too expensive" in said or "not allowed" in said or "undefined" in said


def test_macro_calls_count_against_the_budget_naming_the_line(tmp_path: Path) -> None:
    text = (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}\n{{ f(30) }}"
    )
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, text)

    assert str(raised.value).startswith(
        f"template sms/en/x.j2 line 1: too expensive: more than {MAX_LOOP_STEPS:,} steps"
    )


def test_lipsum_is_no_global(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="'lipsum' is undefined"):
        _render(tmp_path, "{{ lipsum(1) }}")


def test_a_render_past_its_deadline_stops_at_the_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]

    def clock() -> float:  # a second passes at each read
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(templates_module, "_clock", clock)
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, "{% for i in range(5) %}{{ i }}{% endfor %}")

    assert str(raised.value) == "template sms/en/x.j2 line 1: too expensive: longer than 2 seconds"


def test_output_past_the_bound_is_refused(tmp_path: Path) -> None:
    text = "{% set s = 'x' * 50000 %}{{ s }}{{ s }}{{ s }}"
    with pytest.raises(TemplateError) as raised:
        _render(tmp_path, text)

    assert str(raised.value) == (
        f"template sms/en/x.j2: too expensive: more than {MAX_OUTPUT:,} characters of output"
    )
    assert _render(tmp_path, "{% set s = 'x' * 50000 %}{{ s }}{{ s }}") == "x" * MAX_OUTPUT


def test_what_a_message_uses_renders_as_before(tmp_path: Path) -> None:
    text = (
        "{{ '%05.1f' % 3.14159 }}|{{ '{:>6}'.format('ab') }}|{{ 'ab'|center(6) }}|"
        "{{ items|join(', ') }}|{{ items|map('string')|join('-') }}|{{ 'a' ~ 1 ~ 'b' }}|"
        "{{ [1, 2] + [3] }}|{{ 'ab' * 2 }}|{{ 2 ** 10 }}|{{ '%d'|format(250000) }}|"
        "{{ 'x y'|replace(' ', '_') }}|{{ 'a\nb'|indent(2) }}"
    )

    assert _render(tmp_path, text, items=[1, 2]) == (
        "003.1|    ab|  ab  |1, 2|1-2|a1b|[1, 2, 3]|abab|1024|250000|x_y|a\n  b"
    )


def test_a_render_outside_template_set_render_is_counted_too(tmp_path: Path) -> None:
    environment = TemplateSet(tmp_path)._plain
    nested = "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"

    with pytest.raises(templates_module.TooExpensive, match="more than 10,000 steps"):
        environment.from_string(nested).render()
    with pytest.raises(templates_module.TooExpensive, match="characters of output"):
        environment.from_string("{% for i in range(3) %}{{ 'x' * 50000 }}{% endfor %}").render()


def test_an_email_html_is_escaped_even_when_its_source_was_compiled_plain_first(
    tmp_path: Path,
) -> None:
    text = (
        "{% block subject %}{{ x }}{% endblock %}{% block text %}{{ x }}{% endblock %}"
        "{% block html %}<p>{{ x }}</p>{% endblock %}"
    )
    name = "email/en/esc.j2"
    first = TemplateSet(tmp_path, {name: text})
    first._plain.get_template(name)  # the plain code is cached first

    rendered = TemplateSet(tmp_path, {name: text}).render(
        Channel.EMAIL, "en", "esc", {"x": "<script>"}
    )

    assert rendered.html == "<p>&lt;script&gt;</p>"
    assert rendered.body == "<script>"
    assert rendered.subject == "<script>"


def test_the_code_cache_keys_on_the_environment_options(tmp_path: Path) -> None:
    source = "{% if true %}\n  a\n{% endif %}\n"
    loader = templates_module.jinja2.DictLoader({"t": source})
    trimmed = templates_module._BoundedEnvironment(
        loader=loader, bytecode_cache=templates_module._COMPILED, trim_blocks=True
    )
    kept = templates_module._BoundedEnvironment(
        loader=loader, bytecode_cache=templates_module._COMPILED
    )

    assert trimmed.get_template("t").render() == "  a\n"
    assert kept.get_template("t").render() == "\n  a\n"


def test_the_compiler_folds_no_constant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []

    def probe(value: str) -> str:
        called.append(value)
        return value

    # As Jinja's own filters are: `'x'|center(40000000)` would be made by the compiler.
    monkeypatch.setitem(templates_module.jinja2.defaults.DEFAULT_FILTERS, "probe", probe)
    templates = TemplateSet(tmp_path, {"sms/en/x.j2": "{{ 'x'|probe }}"})

    templates._plain.get_template("sms/en/x.j2")
    assert called == []
    assert templates.render(Channel.SMS, "en", "x", {}).body == "x"
    assert called == ["x"]


def test_the_code_cache_is_bounded_by_source_size_and_skips_long_sources() -> None:
    cache = templates_module._CompiledCode(entries=100, chars=10_000)
    environment = templates_module._BoundedEnvironment()
    for i in range(20):
        bucket = cache.get_bucket(environment, f"t{i}", None, "x" * 1000)
        bucket.code = compile("1", "t", "eval")
        cache.dump_bytecode(bucket)
    long = cache.get_bucket(
        environment, "long", None, "x" * (templates_module.MAX_CACHED_SOURCE + 1)
    )
    long.code = compile("1", "t", "eval")
    cache.dump_bytecode(long)

    assert len(cache) == 10  # 10 x 1,000 characters
    assert cache.get_bucket(environment, "t19", None, "x" * 1000).code is not None
    assert cache.get_bucket(environment, "t0", None, "x" * 1000).code is None


def test_the_sets_over_others_are_kept_a_few_per_process(tmp_path: Path) -> None:
    base = TemplateSet(tmp_path)
    made = []
    for child in range(4):
        over = base.over({"sms/en/a.j2": str(child)})
        made.append(weakref.ref(over))
        for grandchild in range(8):
            made.append(weakref.ref(over.over({"sms/en/b.j2": str(grandchild)})))
        del over
    gc.collect()

    assert sum(ref() is not None for ref in made) <= templates_module._OVERS_KEPT
