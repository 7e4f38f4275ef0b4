"""The service's OpenAI client: the SDK's, with streamed Responses events built by their type.

The SDK turns each event of a streamed response into a model by validating it against the
union of every Responses event type first (pydantic tries the members in turn, since the
SDK's discriminator is its own annotation, not pydantic's), and only when that fails by
constructing the member that the event's ``type`` names. For the Agents SDK, which reads
its model's stream through this path, the validation was a third of the app's CPU per delta
(py-spy, docs/performance.md). ``OpenAIClient`` goes straight to the named member, built
the way the SDK builds it (``construct``): a well-formed event gives the same object as
before; an event whose type it does not know, or that more than one member claims, goes the
SDK's way. The Responses engine does not use it: it reads the body's bytes itself.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

import httpx2
from openai import AsyncOpenAI
from openai.types.responses import ResponseStreamEvent


def _members_by_type(union: Any) -> dict[str, type[Any]]:
    """``type`` value → the union member whose ``type`` field is that literal alone."""
    members: dict[str, type[Any]] = {}
    claimed: set[str] = set()
    for member in get_args(get_args(union)[0]):
        field = member.model_fields.get("type")
        annotation = field.annotation if field is not None else None
        if get_origin(annotation) is not Literal:
            continue
        for value in get_args(annotation):
            if value in members:
                claimed.add(value)
            members[value] = member
    return {value: member for value, member in members.items() if value not in claimed}


STREAM_EVENT_TYPES: dict[str, type[Any]] = _members_by_type(ResponseStreamEvent)
"""The Responses stream's event classes by their ``type``."""


class OpenAIClient(AsyncOpenAI):
    """``AsyncOpenAI`` with each streamed Responses event built as the class its type names."""

    def _process_response_data(
        self, *, data: object, cast_to: Any, response: httpx2.Response
    ) -> Any:
        if (
            cast_to is ResponseStreamEvent
            and type(data) is dict
            and not self._strict_response_validation
        ):
            member = STREAM_EVENT_TYPES.get(data.get("type"))  # type: ignore[arg-type]
            if member is not None:
                return member.construct(**data)
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
