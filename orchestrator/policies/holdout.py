"""Holdout groups: which patients never get a message, so its effect can be measured.

Assignment is a hash of the flow, the message and the patient: the same
patient is always in or out of the same message's holdout, in every process
and on every replay, and caregivers' copies follow their patient.
"""

from __future__ import annotations

import hashlib

__all__ = ["held_out"]

_BUCKETS = 10_000


def held_out(patient_id: str, flow_id: str, message_id: str, percent: float | None) -> bool:
    """Whether the patient is in the `percent`% held out of this message."""
    if not percent:
        return False
    material = f"{flow_id}\x1f{message_id}\x1f{patient_id}".encode()
    bucket = int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big") % _BUCKETS
    return bucket < round(percent * _BUCKETS / 100)
