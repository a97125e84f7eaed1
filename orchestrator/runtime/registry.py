"""Flow versions at run time: the current flows, and the older versions that
episodes started on and finish on.

An episode stays on the flow version it started on. Each version the
service runs is recorded in the store; a file whose content changed without
a version bump is refused, because two different flows would share one name.

The current version of a flow is the newest recorded: a file's, or one
published in the console (`drafts.publish`), which a file older than it does
not replace (`behind` says so, for the log and the console's banner). A
version's stored templates (`templates`) are read before the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from ..errors import FlowError, FlowProblem
from ..flows import Flow, FlowFile, FlowSet
from ..ports import FlowVersions

__all__ = ["FlowRegistry"]


@dataclass(frozen=True)
class FlowRegistry:
    current: Mapping[str, Flow]
    versions: Mapping[tuple[str, int], Flow]
    # (flow id, version) -> template name -> text, for the versions that keep theirs.
    templates: Mapping[tuple[str, int], Mapping[str, str]] = field(default_factory=dict)
    # flow id -> (file, version): what `flows/` holds, for the flows read from files.
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def behind(self, flow_id: str) -> str | None:
        """The flow's file, when a newer version than it was published in the console."""
        current = self.current.get(flow_id)
        found = self.files.get(flow_id)
        if current is None or found is None or found[1] >= current.version:
            return None
        return found[0]

    @classmethod
    def open(
        cls,
        flows: FlowSet,
        store: FlowVersions,
        now: datetime,
        templates: Mapping[tuple[str, int], Mapping[str, str]] | None = None,
    ) -> FlowRegistry:
        """Record the files' versions in the store and load every other one.

        A file's version is recorded when it is new; when the store has a
        newer version of the flow (published in the console), that one is current.

        Raises:
            FlowError: a flow's content changed but its version did not, or a
                recorded version's source says another version.
        """
        known = store.flow_versions()
        problems = []
        for flow_id, document in flows.documents.items():
            source = document.model_dump_json(by_alias=True)
            digest = hashlib.sha256(source.encode()).hexdigest()
            seen = known.get((flow_id, document.version))
            if seen is None:
                store.record_flow_version(flow_id, document.version, source, now)
            elif seen[0] != digest and not _same_flow(seen[1], document):
                problems.append(
                    FlowProblem(
                        str(flows.files[flow_id]),
                        "version",
                        f"flow '{flow_id}' changed but is still version {document.version}, "
                        "which this store already ran; bump the version",
                    )
                )
        if problems:
            raise FlowError(problems)
        versions = {(f.id, f.version): f for f in flows.flows.values()}
        files = {f.id: (str(flows.files[f.id]), f.version) for f in flows.flows.values()}
        return cls._of(versions, known, dict(flows.flows), templates or {}, files)

    def reloaded(
        self, store: FlowVersions, templates: Mapping[tuple[str, int], Mapping[str, str]]
    ) -> FlowRegistry:
        """This registry with the versions recorded since (by this process or another).

        Raises:
            FlowError: a recorded version's source says another version.
        """
        return self._of(
            dict(self.versions), store.flow_versions(), dict(self.current), templates, self.files
        )

    @classmethod
    def _of(
        cls,
        versions: dict[tuple[str, int], Flow],
        known: Mapping[tuple[str, int], tuple[str, str]],
        current: dict[str, Flow],
        templates: Mapping[tuple[str, int], Mapping[str, str]],
        files: Mapping[str, tuple[str, int]],
    ) -> FlowRegistry:
        problems = []
        for (flow_id, version), (_, source) in known.items():
            if (flow_id, version) not in versions:
                # An older version finishes its episodes but starts none; it keeps
                # its starting triggers all the same, so that a re-fold of its
                # journeys opens their episodes again (`versions.advance_versions`).
                flow = FlowFile.model_validate_json(source).to_core()
                if flow.version != version:
                    # Two rows would run as one version: episodes would find the wrong flow.
                    problems.append(
                        FlowProblem(
                            "store",
                            "version",
                            f"flow '{flow_id}' is recorded as version {version} but its "
                            f"source says version {flow.version}; not run",
                        )
                    )
                    continue
                versions[(flow_id, version)] = flow
        if problems:
            raise FlowError(problems)
        for (flow_id, version), flow in versions.items():
            # The flows that run are those read from files; the newest version is current.
            if flow_id in current and current[flow_id].version < version:
                current[flow_id] = flow
        return cls(current, versions, dict(templates), dict(files))

    def version(self, flow_id: str, version: int) -> Flow:
        return self.versions[(flow_id, version)]

    @classmethod
    def of(cls, flows: Mapping[str, Flow]) -> FlowRegistry:
        """A registry of just these flows (tests, simulation)."""
        return cls(dict(flows), {(f.id, f.version): f for f in flows.values()})


def _same_flow(source: str, document: FlowFile) -> bool:
    """Whether a recorded source is this document, read by the current schema.

    A release that adds a field with a default changes every flow's dump (and
    digest) without changing any flow: that is not a change in place.
    """
    try:
        return FlowFile.model_validate_json(source) == document
    except ValidationError:
        return False
