"""Drafts and publishing: a flow edited as text, checked as the service loads it, published.

A draft is the flow's YAML and the templates edited with it. It is checked
exactly as a flow file is at start (`load_flow_text` with the `TemplateCheck`
of the templates it would send: the running version's, under the draft's
edits), so a problem reads `file:line:col path: what` as `flows validate`
says it.

Publishing records a new version, N+1 after the newest the store has, with
the YAML, a snapshot of every template its messages use (so that no later
edit, in a draft or on disk, changes what it sends), who published it (the
role and a short hash of the token: tokens have no names) and the diff
against the version it replaces. The flow's older versions that read their
templates from the files (imported from a file) get a snapshot of what they
send too, in the same transaction: episodes still on them finish with the
texts they started with, whatever `export` later writes to the files; then the runtime takes it up at once
(`Runtime.use_flows`); other processes do on their next tick. New episodes
start on it; running ones finish on their own version. A rollback publishes
an older version's YAML and templates again, as a new version.

`export` writes a flow's current version back to `flows/` and `templates/`
(flows as code), so that a file and a published version need never disagree.
It writes nothing when a template file it would change is still read by a
version that runs: another flow's, or an older version of this one that has
no snapshot (published before versions kept them).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from ..errors import FlowError, FlowProblem, OrchestratorError
from ..event import Channel
from ..flows.loader import load_flow_text
from ..flows.model import Flow
from ..flows.schema import FlowFile
from ..roles import Role
from ..store.published import Draft, Published, PublishedVersion
from ..template_check import TemplateCheck
from ..templates import TemplateSet
from .runtime import Runtime

__all__ = [
    "TEMPLATE_NAME",
    "DraftCheck",
    "SharedTemplate",
    "check_draft",
    "draft_flow",
    "draft_name",
    "export",
    "next_version",
    "publish",
    "publisher",
    "rollback",
    "template_names",
    "version_text",
    "versioned_templates",
    "with_version",
]

# A block-style top-level `version:` line, its key bare or quoted. Any other way
# of writing it (flow style, say) is not rewritten, and `publish` refuses it.
_VERSION_LINE = re.compile(r"""^(["']?)version\1[ \t]*:[^\n]*$""", re.MULTILINE)


@dataclass(frozen=True)
class DraftCheck:
    """A draft's text as the loader read it: the flow, or every problem in it."""

    flow: Flow | None
    document: FlowFile | None = None
    problems: list[FlowProblem] = field(default_factory=list)


def publisher(role: Role, token: str | None) -> str:
    """Who published: the role and a short hash of the token (never the token itself)."""
    if not token:
        return f"{role.value}:open"
    return f"{role.value}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def draft_name(flow_id: str) -> str:
    """The file name a draft's problems are reported against."""
    return f"{flow_id}.yaml"


def check_draft(
    runtime: Runtime, flow_id: str, text: str, templates: TemplateSet, version: int | None = None
) -> DraftCheck:
    """The draft read as a flow file, its templates checked as this organisation sends them.

    With `version`, the text is read as that version (the one it would be published as).
    """
    if version is not None:
        text = with_version(text, version)
    try:
        flow, document = load_flow_text(
            text, draft_name(flow_id), flow_id, TemplateCheck(templates, runtime.dispatcher.org)
        )
    except FlowError as exc:
        return DraftCheck(None, None, list(exc.problems))
    return DraftCheck(flow, document)


def draft_flow(flow_id: str, text: str) -> Flow | None:
    """The draft's flow, its templates unchecked (what a preview renders); None if unreadable."""
    try:
        return load_flow_text(text, draft_name(flow_id), flow_id)[0]
    except FlowError:
        return None


def with_version(text: str, version: int) -> str:
    """The text with its top-level `version:` set to `version` (as publishing numbers it)."""
    return _VERSION_LINE.sub(f"version: {version}", text, count=1)


def next_version(runtime: Runtime, flow_id: str) -> int:
    newest = Published(runtime.store.transactions).newest().get(flow_id, 0)
    return max(newest, runtime.flows.current[flow_id].version) + 1


def versioned_templates(runtime: Runtime, flow_id: str, version: int) -> TemplateSet:
    """The templates a version sends: its stored ones over the files."""
    return runtime.dispatcher.templates_for(flow_id, version)


def template_names(flow: Flow, templates: TemplateSet) -> list[str]:
    """Every template name the flow's messages (and persona variants) render, sorted."""
    names = set()
    for stage in flow.stages:
        for spec in stage.messages:
            variants = [spec, *(spec.for_persona(v.persona) for v in spec.variants)]
            for variant in variants:
                for channel in variant.channels:
                    for language in flow.languages:
                        names.add(templates.name_of(channel, language, variant.template))
    return sorted(names)


def version_text(runtime: Runtime, flow_id: str, version: int) -> str | None:
    """A version's YAML: as published, or the recorded source written as YAML."""
    found = Published(runtime.store.transactions).version(flow_id, version)
    return _text_of(found) if found is not None else None


def _text_of(found: PublishedVersion) -> str:
    if found.text is not None:
        return found.text
    return _yaml_of(found.source)


@lru_cache(maxsize=64)
def _yaml_of(source: str) -> str:
    """A recorded source written as YAML (a version is never changed: written once)."""
    data = json.loads(source)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def publish(
    runtime: Runtime,
    flow_id: str,
    text: str,
    templates: TemplateSet,
    by: str,
    draft: Draft | None = None,
) -> int:
    """Publish `text` with `templates` as the flow's next version; the version.

    `draft` is the draft the text was read from: it is dropped with the
    publishing unless it was edited since (a rollback passes none, and leaves
    the draft alone).

    Raises:
        FlowError: the draft has problems, or its version cannot be set to the
            one it is published as (nothing is recorded).
        VersionTaken: another publisher took the version first (nothing is recorded).
    """
    current = runtime.flows.current[flow_id]
    version = next_version(runtime, flow_id)
    text = with_version(text, version)
    checked = check_draft(runtime, flow_id, text, templates)
    if checked.flow is None or checked.document is None:
        raise FlowError(checked.problems)
    if checked.document.version != version:
        # The text as recorded must say the version it is recorded as.
        raise FlowError(
            [
                FlowProblem(
                    draft_name(flow_id),
                    "version",
                    f"publishing numbers this version {version}, but the version could not "
                    f"be set in the text (it still reads {checked.document.version}): "
                    "write it as a line of its own, `version: 1`",
                )
            ]
        )
    snapshot = _snapshot(checked.flow, templates)
    # The older versions reading the files keep what they send from now on.
    files = runtime.dispatcher.templates
    kept = {
        version: _snapshot(flow, files)
        for (other, version), flow in runtime.flows.versions.items()
        if other == flow_id and not runtime.flows.templates.get((other, version))
    }
    published = Published(runtime.store.transactions)
    replaced = published.version(flow_id, current.version)
    before_text = _text_of(replaced) if replaced is not None else ""
    before = versioned_templates(runtime, flow_id, current.version)
    diff = _diff(flow_id, current.version, version, before_text, text, before, snapshot)
    published.publish(
        flow_id,
        version,
        checked.document.model_dump_json(by_alias=True),
        text,
        snapshot,
        by,
        diff,
        runtime.clock.now(),
        draft,
        kept,
    )
    runtime.use_flows(runtime.flows.reloaded(runtime.store, published.templates()))
    return version


def _snapshot(flow: Flow, templates: TemplateSet) -> dict[str, str]:
    """The text of every template the flow renders (those that exist)."""
    return {
        name: found
        for name in template_names(flow, templates)
        if (found := templates.text_of(name)) is not None
    }


def rollback(runtime: Runtime, flow_id: str, version: int, by: str) -> int:
    """Publish version `version`'s YAML and templates again, as a new version; the new one.

    Raises:
        KeyError: the flow has no such version.
        FlowError, VersionTaken: as `publish`.
    """
    text = version_text(runtime, flow_id, version)
    if text is None:
        raise KeyError(version)
    return publish(runtime, flow_id, text, versioned_templates(runtime, flow_id, version), by)


def _diff(
    flow_id: str,
    old: int,
    new: int,
    before: str,
    after: str,
    templates: TemplateSet,
    snapshot: Mapping[str, str],
) -> str:
    """The unified diff of the YAML and of each template that changed."""
    lines = list(
        difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            f"{flow_id} version {old}",
            f"{flow_id} version {new}",
            lineterm="",
        )
    )
    for name, text in sorted(snapshot.items()):
        was = templates.text_of(name) or ""
        lines += difflib.unified_diff(
            was.splitlines(), text.splitlines(), f"{name} (v{old})", f"{name} (v{new})", lineterm=""
        )
    return "\n".join(lines)


class SharedTemplate(OrchestratorError):
    """Export would change a template file that other versions (of any flow) send as it is."""

    def __init__(self, name: str, flows: Sequence[str]) -> None:
        self.name = name
        self.flows = tuple(flows)
        super().__init__(
            f"{name} is read from the file by {', '.join(self.flows)}, which send it as it "
            "is: exporting would change their messages; give the edited template a name "
            "of this version's own and publish that"
        )


def export(published: Published, flow_id: str, flows: Path, templates: Path) -> list[Path]:
    """Write the flow's newest version to `flows/<id>.yaml` and its templates; the files written.

    Nothing is written when a template file would change under another
    version that reads it from the file: another flow's, or an older version
    of this flow published before versions kept their templates (publishing
    gives them a snapshot now). Its episodes would send the new text without
    it being published.

    Raises:
        KeyError: the store has no version of the flow.
        SharedTemplate: a template the export would change is another version's too.
    """
    newest = published.newest()
    found = published.version(flow_id, newest[flow_id]) if flow_id in newest else None
    if found is None:
        raise KeyError(flow_id)
    files = TemplateSet(templates)
    changed = {
        name: body
        for name, body in sorted(found.templates.items())
        # Only `<channel>/<language>/<name>.j2`, under the templates directory.
        if TEMPLATE_NAME.match(name) and files.text_of(name) != body
    }
    # Every other version: the other flows', and this flow's older ones.
    others = [
        version
        for other in newest
        for version in published.history(other)
        if other != flow_id or version.version != found.version
    ]
    for name in changed:
        sharing = sorted(
            {
                f"{other.flow_id} v{other.version}"
                for other in others
                # A version with the name stored reads that, never the file.
                if name not in other.templates and name in _names_of(other, files)
            }
        )
        if sharing:
            raise SharedTemplate(name, sharing)
    written = [flows / f"{flow_id}.yaml"]
    written[0].write_text(_text_of(found), encoding="utf-8")
    for name, body in changed.items():
        path = templates / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


def _names_of(found: PublishedVersion, templates: TemplateSet) -> list[str]:
    """The template names a recorded version renders."""
    try:
        flow = FlowFile.model_validate_json(found.source).to_core()
    except ValueError:
        return []  # a source this release cannot read runs nowhere
    return template_names(flow, templates)


# A template name as the layout has it: `<channel>/<language>/<name>.j2`.
TEMPLATE_NAME = re.compile(
    r"^("
    + "|".join(c.value for c in Channel)
    + r")/[a-z]{2,3}(-[A-Za-z0-9]+)?/[A-Za-z0-9_.-]+\.j2$"
)
