"""The HL7 v2 sample files of tests/data/hl7v2 and variants built from them."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "hl7v2"
SAMPLES = sorted(p.name for p in DATA.glob("*.hl7"))

__all__ = ["DATA", "SAMPLES", "sample", "with_field", "with_segments"]


def sample(name: str) -> bytes:
    """A sample file's bytes as stored (LF segment ends)."""
    return (DATA / name).read_bytes()


def _segments(raw: bytes) -> list[str]:
    return [s for s in raw.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n") if s]


def with_field(raw: bytes, segment: str, field: int, value: str) -> bytes:
    """The message with one field of the first `segment` replaced (HL7 numbering), CR ends."""
    lines = _segments(raw)
    for i, line in enumerate(lines):
        if line.startswith(segment + "|"):
            parts = line.split("|")
            index = field - 1 if segment == "MSH" else field
            parts += [""] * (index + 1 - len(parts))
            parts[index] = value
            lines[i] = "|".join(parts)
            break
    return "\r".join(lines).encode() + b"\r"


def with_segments(
    raw: bytes, keep: tuple[str, ...] | None = None, drop: tuple[str, ...] = ()
) -> bytes:
    """The message with only the segments kept (or without those dropped), CR ends."""
    lines = [s for s in _segments(raw) if (keep is None or s[:3] in keep) and s[:3] not in drop]
    return "\r".join(lines).encode() + b"\r"
