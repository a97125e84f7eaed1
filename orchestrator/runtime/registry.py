"""Flow versions at run time: the current flows, and the older versions that
episodes started on and finish on.

An episode stays on the flow version it started on. Each version the
service runs is recorded in the store; a file whose content changed without
a version bump is refused, because two different flows would share one name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
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

    @classmethod
    def open(cls, flows: FlowSet, store: FlowVersions, now: datetime) -> FlowRegistry:
        """Record the current versions in the store and load the older ones.

        Raises:
            FlowError: a flow's content changed but its version did not.
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
        for (flow_id, version), (_, source) in known.items():
            if (flow_id, version) not in versions:
                # An older version finishes its episodes but starts none; it keeps
                # its starting triggers all the same, so that a re-fold of its
                # journeys opens their episodes again (`versions.advance_versions`).
                versions[(flow_id, version)] = FlowFile.model_validate_json(source).to_core()
        return cls(dict(flows.flows), versions)

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
