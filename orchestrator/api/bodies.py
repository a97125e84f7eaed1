"""Request bodies read with a limit: a body past it is not buffered whole."""

from __future__ import annotations

from fastapi import Request

__all__ = ["head_of", "read_limited"]


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (the rest is not buffered)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            request.state.head = b"".join(chunks)[:65536]
            return None
    return b"".join(chunks)


async def head_of(request: Request) -> bytes:
    """The start of an oversized body, kept with its rejection."""
    head: bytes | None = getattr(request.state, "head", None)
    if head is not None:
        return head
    collected = b""
    async for chunk in request.stream():
        collected += chunk
        if len(collected) >= 65536:
            break
    return collected[:65536]
