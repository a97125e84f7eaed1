"""docs/architecture.md stays honest where that is cheap to check.

Every `ORCHESTRATOR_*` setting, every key of a flow file and every audit
reason the code writes appears in it. Reasons are found on the source with
`ast`, as `test_core_purity` finds imports: the string literals (and the
literal head of an f-string, such as `cancel_on:`) in the places a reason is
given: the policies' verdicts, the engine's cancel and expire actions, the
fold's drops, the store calls that record a status with its reason, and the
variables and returns named for reasons. A new reason in any of those places
fails here until the doc says when it is written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from orchestrator.flows.schema import flow_json_schema
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
SCANNED = ("orchestrator", "connectors")

# Callables that take a reason, and the position of the reason among their arguments.
REASON_ARGUMENT = {
    "Suppress": 0,
    "Expire": 0,
    "Defer": 1,
    "CancelMessage": 1,
    "ExpireMessage": 1,
    "_drop": 1,
    "_retime": 2,
    "_fail": 1,
    "fail_held": 3,
    "finish": 4,
    "reschedule": 4,
    "hold": 3,
    "settle_sent": 3,
    "advance": 1,
    "record": 3,
    "_record": 3,
    "_schedule": 2,
}
# Names that hold a reason (or a status and its reason) when assigned.
REASON_NAMES = {"reason", "refusal"}
# Functions whose returns are reasons (or a status with its reason).
REASON_RETURNS = {"_refusal", "reason", "contactable"}
# Keyword arguments that carry a reason.
REASON_KEYWORDS = {"reason"}


def literal_heads(node: ast.expr | None) -> Iterator[str]:
    """The literal text `node` starts with: a string, or an f-string up to its first field."""
    if node is None:
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):
        head = ""
        for part in node.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            head += part.value
        yield head
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        yield from literal_heads(node.left)
    elif isinstance(node, ast.IfExp):
        yield from literal_heads(node.body)
        yield from literal_heads(node.orelse)
    elif isinstance(node, ast.Tuple):
        for element in node.elts:
            yield from literal_heads(element)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from literal_heads(value)
    elif isinstance(node, ast.Call) and _called(node) == "get" and len(node.args) == 2:
        yield from literal_heads(node.args[1])  # a reason looked up, with its default


def _named(target: ast.expr) -> str | None:
    """The name an assignment target is known by: `reason`, `facts.unreadable[key]`."""
    if isinstance(target, ast.Subscript):
        target = target.value
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _called(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def reason_literals(source: str) -> set[str]:
    """Every reason (and status beside it) that `source` gives in a reason's place."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            index = REASON_ARGUMENT.get(_called(node) or "")
            if index is not None and index < len(node.args):
                found.update(literal_heads(node.args[index]))
            for keyword in node.keywords:
                if keyword.arg in REASON_KEYWORDS:
                    found.update(literal_heads(keyword.value))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                name = _named(target) or ""
                if name in REASON_NAMES or (
                    isinstance(target, ast.Subscript) and "unreadable" in name
                ):
                    found.update(literal_heads(node.value))
        elif isinstance(node, ast.FunctionDef):
            if node.name in REASON_RETURNS:
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Return):
                        found.update(literal_heads(inner.value))
            for arg, default in zip(
                node.args.args[len(node.args.args) - len(node.args.defaults) :],
                node.args.defaults,
                strict=True,
            ):
                if arg.arg in REASON_NAMES:
                    found.update(literal_heads(default))
    return {text for text in found if text.strip()}


def _sources() -> Iterator[Path]:
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


@cache
def code_reasons() -> dict[str, str]:
    """Every reason literal in the packages, with the first file that gives it."""
    found: dict[str, str] = {}
    for path in _sources():
        for text in reason_literals(path.read_text()):
            found.setdefault(text, str(path.relative_to(ROOT)))
    return found


def _doc() -> str:
    return DOC.read_text()


def _schema_keys(schema: dict[str, Any]) -> set[str]:
    """Every property name of the flow file's JSON Schema, nested models included."""
    keys: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            properties = item.get("properties")
            if isinstance(properties, dict):
                keys.update(properties)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return keys


def test_the_readme_links_to_the_architecture_doc() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_architecture_doc(name: str) -> None:
    assert f"ORCHESTRATOR_{name.upper()}" in _doc()


@pytest.mark.parametrize("key", sorted(_schema_keys(flow_json_schema())))
def test_every_flow_file_key_is_in_the_architecture_doc(key: str) -> None:
    assert f"`{key}`" in _doc()


def test_every_audit_reason_the_code_writes_is_in_the_architecture_doc() -> None:
    doc = " ".join(_doc().split())  # a reason may wrap across lines of the Markdown
    missing = {text: where for text, where in code_reasons().items() if text not in doc}
    assert missing == {}


def test_the_reason_scan_finds_the_reasons_of_every_layer() -> None:
    # Guards the scan itself: were it to find nothing, the test above would pass.
    found = code_reasons()
    for expected in (
        "stale",  # the gate
        "holdout",
        "no_contact_point",  # consent
        "cancel_on:",  # the fold, an f-string head
        "expired_before_scheduling",  # the engine
        "reconcile:unresolved",  # the dispatcher
        "consent:provider_opt_out",  # a return of `_refusal`
        "decode:message:",  # the store
        "provider:",  # the webhooks
        "store:",  # `UnstorableError.reason`
    ):
        assert expected in found


def test_the_reason_scan_reads_every_position_a_reason_is_given_in() -> None:
    source = (
        "def f(reason='default_reason'):\n"
        "    Suppress('suppress_reason')\n"
        "    store.finish(m, o, now, 'failed', f'finish_reason:{x}')\n"
        "    reason = 'assigned_reason' if x else 'other_reason'\n"
        "    g(m, reason=f'keyword_reason:{y}' + tail)\n"
        "def _refusal(e):\n"
        "    return 'suppressed', 'returned_reason'\n"
    )
    assert reason_literals(source) == {
        "default_reason",
        "suppress_reason",
        "finish_reason:",
        "assigned_reason",
        "other_reason",
        "keyword_reason:",
        "suppressed",
        "returned_reason",
    }
