"""Who an API token speaks for: the roles, and the `ORCHESTRATOR_API_TOKENS` value that maps tokens to them.

Plain values: the settings validate the mapping with `parse_role_tokens`, and
the HTTP layer (`api/roles.py`) checks a request's token against it. A token
never appears in an error message: a mistake is named by its position.
"""

from __future__ import annotations

import json
from enum import StrEnum

__all__ = ["Role", "parse_role_tokens"]

_SETTING = "ORCHESTRATOR_API_TOKENS"


class Role(StrEnum):
    """What a token may do. Each role's pages and routes are listed in docs/architecture.md."""

    # Everything, and the only role that may publish flows or ingest events.
    ADMIN = "admin"
    # Patient timelines, rendered bodies, the audit trail and the outbox.
    OPERATIONS = "operations"
    # Aggregates only: never a patient id or a contact point.
    MARKETING = "marketing"


def parse_role_tokens(text: str, *, min_length: int) -> dict[str, Role]:
    """`{"<token>": "<role>", ...}` as a mapping; raises ValueError naming the setting, not a token."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(
            f'{_SETTING}: expected a JSON object {{"<token>": "<role>", ...}}'
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f'{_SETTING}: expected a JSON object {{"<token>": "<role>", ...}}')
    known = ", ".join(r.value for r in Role)
    roles: dict[str, Role] = {}
    for position, (token, role) in enumerate(data.items(), start=1):
        if len(token) < min_length or token.strip() != token:
            raise ValueError(
                f"{_SETTING}: token {position} is shorter than {min_length} characters "
                "or has surrounding spaces"
            )
        if not isinstance(role, str) or role not in {r.value for r in Role}:
            raise ValueError(f"{_SETTING}: token {position} has an unknown role; expected {known}")
        roles[token] = Role(role)
    return roles
