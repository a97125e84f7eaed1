"""Reading flow files from disk: YAML with positions, every problem at once.

The shell side of flows: it opens files, keeps each field's line and column,
runs the structural (`schema`) and whole-flow (`checks`) validation, and
raises one `FlowError` listing every problem as `file:line:column path: what`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import FlowError, FlowProblem
from .checks import TemplateCatalog, check_flow
from .model import Flow
from .schema import FlowFile

__all__ = ["MAX_FLOW_TEXT", "FlowSet", "flow_paths", "load_flow", "load_flow_text", "load_flows"]

Position = tuple[int, int]

# Bounds on what is read, so that text typed in the console (or a hostile
# file) is a problem reported, never a stalled or crashed service: the
# largest shipped flow is about 20 KB and 2,000 values.
MAX_FLOW_TEXT = 256 * 1024
# Values visited, an alias counted each time it is used (billion laughs).
_MAX_NODES = 50_000
_MAX_DEPTH = 64


@dataclass(frozen=True)
class FlowSet:
    """The flows of a directory, by id, with the file each came from."""

    flows: Mapping[str, Flow]
    files: Mapping[str, Path]
    documents: Mapping[str, FlowFile]


def flow_paths(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their `*.yaml` / `*.yml` files, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


def load_flows(paths: Iterable[Path], templates: TemplateCatalog | None = None) -> FlowSet:
    """Load and validate flow files (directories are expanded).

    Raises:
        FlowError: listing every problem in every file.
    """
    problems: list[FlowProblem] = []
    flows: dict[str, Flow] = {}
    files: dict[str, Path] = {}
    documents: dict[str, FlowFile] = {}
    for path in flow_paths(paths):
        try:
            flow, id_at, document = _load(path, templates)
        except FlowError as exc:
            problems += exc.problems
            continue
        if flow.id in flows:
            message = f"flow '{flow.id}' is also defined in {files[flow.id]}"
            problems.append(FlowProblem(str(path), "id", message, *id_at))
            continue
        flows[flow.id] = flow
        files[flow.id] = path
        documents[flow.id] = document
    if problems:
        raise FlowError(problems)
    return FlowSet(flows, files, documents)


def load_flow(path: Path, templates: TemplateCatalog | None = None) -> Flow:
    """Load one flow file.

    Raises:
        FlowError: listing every problem in the file.
    """
    return _load(path, templates)[0]


def _keys_as_written(node: yaml.MappingNode) -> None:
    """YAML 1.1 reads a key such as `on:` or `yes:` as a boolean; a flow file
    has no boolean keys, so the key keeps its text and a misspelt field is
    reported by its name, where it is."""
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:bool":
            key_node.tag = "tag:yaml.org,2002:str"


class _FlowYAMLLoader(yaml.SafeLoader):
    """Safe YAML whose mapping keys stay the text written (`_keys_as_written`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _keys_as_written(node)
        found: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return found


try:  # libyaml's parser, when PyYAML was built with it
    from yaml import CSafeLoader as _CSafeLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _CSafeLoader  # type: ignore[assignment]


class _FastFlowYAMLLoader(_CSafeLoader):
    """`_FlowYAMLLoader` on libyaml's parser, ten times as fast: a draft is read as
    it is typed in the console. A text it refuses is read again by
    `_FlowYAMLLoader`, so what is reported never depends on which parser ran."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _keys_as_written(node)
        found: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return found


def load_flow_text(
    text: str, name: str, flow_id: str, templates: TemplateCatalog | None = None
) -> tuple[Flow, FlowFile]:
    """Load a flow from its text (a draft in the console), reported as the file `name`.

    Its id must be `flow_id`, as a file's must be its name.

    Raises:
        FlowError: listing every problem in the text.
    """
    flow, _, document = _load_text(text, name, flow_id, templates)
    return flow, document


def _load(path: Path, templates: TemplateCatalog | None) -> tuple[Flow, Position, FlowFile]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(
            [FlowProblem(name, "", f"cannot read the file ({exc.__class__.__name__})")]
        ) from exc
    return _load_text(text, name, path.stem, templates)


class _TooBig(Exception):
    """The document is nested too deeply or has too many values to read."""


def _load_text(
    text: str, name: str, stem: str, templates: TemplateCatalog | None
) -> tuple[Flow, Position, FlowFile]:
    if len(text) > MAX_FLOW_TEXT:
        limit = MAX_FLOW_TEXT // 1024
        raise FlowError([FlowProblem(name, "", f"the flow is longer than {limit} KiB")])
    try:
        data, positions, duplicates = _read(text, name, _FastFlowYAMLLoader)
    except FlowError:
        # Read again by the pure-Python reader, whose words for a problem
        # (and whose bounds) are the ones reported.
        data, positions, duplicates = _read(text, name, _FlowYAMLLoader)
    if not isinstance(data, dict):
        raise FlowError([FlowProblem(name, "", "expected a mapping at the top of the file", 1, 1)])

    def problem(loc: tuple[str | int, ...], message: str) -> FlowProblem:
        line, column = _position(positions, loc)
        return FlowProblem(name, _format_loc(loc), message, line, column)

    # A duplicate key does not stop the checks: the later value is the one read.
    try:
        model = FlowFile.model_validate(data)
    except ValidationError as exc:
        raise FlowError(
            duplicates
            + [problem(_clean_loc(e["loc"]), _message(e)) for e in exc.errors(include_url=False)]
        ) from None
    found = duplicates + [problem(_parse_path(p), m) for p, m in check_flow(model)]
    flow = model.to_core()
    if templates is not None:
        found += [problem(_parse_path(p), m) for p, m in templates.problems(flow)]
    if model.id != stem:
        found.append(problem(("id",), f"flow id '{model.id}' differs from the file name '{stem}'"))
    if found:
        raise FlowError(found)
    return flow, _position(positions, ("id",)), model


def _read(
    text: str, name: str, reading: type[_FlowYAMLLoader | _FastFlowYAMLLoader]
) -> tuple[Any, dict[tuple[str | int, ...], Position], list[FlowProblem]]:
    """The document `text` holds, each value's position, and its duplicate keys.

    Raises:
        FlowError: the text is no YAML, empty, or too deep or large to read.
    """
    try:
        loader = reading(text)
    except yaml.YAMLError as exc:
        # The reader refuses some characters (NUL, other controls) before parsing.
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise FlowError([FlowProblem(name, "", f"not valid YAML: {reason}")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise FlowError([FlowProblem(name, "", "the file is empty; expected a flow mapping")])
        positions: dict[tuple[str | int, ...], Position] = {}
        duplicates: list[FlowProblem] = []
        _walk(node, (), positions, duplicates, name, [_MAX_NODES])
        data = loader.construct_document(node)
    except (_TooBig, RecursionError):
        message = (
            f"the flow is nested deeper than {_MAX_DEPTH} levels or has more than "
            f"{_MAX_NODES:,} values (an alias counts each time it is used)"
        )
        raise FlowError([FlowProblem(name, "", message)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        reason = getattr(exc, "problem", None) or str(exc)
        raise FlowError([FlowProblem(name, "", f"not valid YAML: {reason}", line, column)]) from exc
    finally:
        loader.dispose()
    return data, positions, duplicates


def _walk(
    node: yaml.Node,
    path: tuple[str | int, ...],
    positions: dict[tuple[str | int, ...], Position],
    duplicates: list[FlowProblem],
    name: str,
    budget: list[int],
) -> None:
    budget[0] -= 1
    if budget[0] < 0 or len(path) > _MAX_DEPTH:
        raise _TooBig
    positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            label = str(key.value)
            child = (*path, label)
            if label in seen:
                duplicates.append(
                    FlowProblem(
                        name,
                        _format_loc(child),
                        "duplicate key",
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                    )
                )
            seen.add(label)
            positions[child] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _walk(value, child, positions, duplicates, name, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), positions, duplicates, name, budget)


def _position(
    positions: Mapping[tuple[str | int, ...], Position], loc: tuple[str | int, ...]
) -> Position:
    while loc and loc not in positions:
        loc = loc[:-1]
    return positions.get(loc, (1, 1))


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    # Drop pydantic's validator and union tags; keep field names and indexes.
    return tuple(
        part
        for part in loc
        if isinstance(part, int)
        or not (part.startswith(("function-", "[")) or part[:1].isupper() or part in _TAGS)
    )


_TAGS = frozenset({"str", "int", "bool", "float", "list", "dict", "none", "literal", "enum"})


def _format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def _parse_path(path: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for piece in path.replace("]", "").replace("[", ".").split("."):
        if piece:
            parts.append(int(piece) if piece.isdigit() else piece)
    return tuple(parts)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return _unknown_field(_clean_loc(error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if kind in ("enum", "literal_error", "string_pattern_mismatch") and isinstance(
        given, str | int
    ):
        message += f", got '{given}'"
    return message


def _unknown_field(loc: tuple[str | int, ...]) -> str:
    """Name the fields allowed where an unknown one was written, nearest first."""
    allowed = _fields_at(loc[:-1])
    if not allowed:
        return "unknown field"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown field; {hint}expected one of {', '.join(allowed)}"


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = FlowFile
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `list[StageModel] | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
