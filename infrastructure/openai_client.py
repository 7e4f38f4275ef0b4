"""The service's OpenAI client: the SDK's, with streamed text deltas built without validation.

The SDK turns each event of a streamed response into a model by validating it against the
union of every Responses event type (pydantic tries the members in turn, since the SDK's
discriminator is its own annotation, not pydantic's). For the Agents SDK, which reads its
model's stream through this path, that was a third of the app's CPU per delta (py-spy,
docs/performance.md). ``OpenAIClient`` builds an event whose values validation would keep as
they are (strings, integers, flags, literals, empty lists: every text delta) directly as the
class its ``type`` names, with what validation gives (the same values, the extra keys kept
and counted as set). Every other event (those with models inside: the response, its output
items) goes the SDK's way. The Responses engine does not use it: it reads the body's bytes
itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import UnionType
from typing import Any, Final, Literal, Union, get_args, get_origin

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

_PLAIN: Final = (str, int, bool)
_UNSET: Final = object()


def _kept_as_is(annotation: Any) -> tuple[frozenset[type], frozenset[str]] | None:
    """The value types and the literal strings validation keeps as they came for a field of
    this type: a string, an integer, a flag, a string literal, or one of these or ``None``;
    ``None`` for any other type (a model, a float, a date)."""
    if annotation in _PLAIN:
        return frozenset({annotation}), frozenset()
    if get_origin(annotation) is Literal:
        values = get_args(annotation)
        if not all(type(value) is str for value in values):
            return None
        return frozenset(), frozenset(values)
    if get_origin(annotation) in (Union, UnionType):
        kinds: set[type] = set()
        literals: set[str] = set()
        for arg in get_args(annotation):
            if arg is type(None):
                continue
            kept = _kept_as_is(arg)
            if kept is None:
                return None
            kinds |= kept[0]
            literals |= kept[1]
        return frozenset(kinds), frozenset(literals)
    return None


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kinds: frozenset[type]  # a value of exactly one of these types is kept as it came
    literals: frozenset[str]  # ... and so is one of these strings
    default: Any  # _UNSET: none that can be shared


def _fields(model: type[Any]) -> tuple[_Field, ...] | None:
    """What building ``model`` without validation needs; ``None`` for a class with aliased
    fields (their keys are not their names)."""
    fields = []
    for name, info in model.model_fields.items():
        if info.alias not in (None, name):
            return None
        default = info.default
        if info.default_factory is not None or not isinstance(default, (*_PLAIN, type(None))):
            default = _UNSET
        kinds, literals = _kept_as_is(info.annotation) or (frozenset(), frozenset())
        fields.append(_Field(name, kinds, literals, default))
    return tuple(fields)


_BUILDABLE: Final = {
    event_type: (member, fields)
    for event_type, member in STREAM_EVENT_TYPES.items()
    if (fields := _fields(member)) is not None
}
"""The event classes by ``type``, with their fields, for those built without validation."""


def _built_as_is(model: type[Any], fields: tuple[_Field, ...], data: dict[str, Any]) -> Any:
    """The event validation would give for ``data``, built without it, when validation
    would keep every value as it came (values of exactly their field's plain type, empty
    lists, no ``None``: a text delta, every time); else ``None``. Extra keys (OpenAI's
    ``obfuscation``) are kept as extras and counted as set, as validation does."""
    values: dict[str, Any] = {}
    present: set[str] = set()
    for field in fields:
        value = data.get(field.name, _UNSET)
        if value is _UNSET:
            if field.default is _UNSET:
                return None
            values[field.name] = field.default
            continue
        kind = type(value)
        if kind in field.kinds or (kind is str and value in field.literals):
            values[field.name] = value
        elif kind is list and not value:
            values[field.name] = []
        else:  # None, a value validation would convert or refuse, a model: the SDK's way
            return None
        present.add(field.name)
    extra = {key: value for key, value in data.items() if key not in values}
    present.update(extra)  # as validation counts them (``model_dump(exclude_unset=True)``)
    event: Any = object.__new__(model)
    object.__setattr__(event, "__dict__", values)
    object.__setattr__(event, "__pydantic_private__", None)
    object.__setattr__(event, "__pydantic_extra__", extra)
    object.__setattr__(event, "__pydantic_fields_set__", present)
    return event


# The paths one client prepares URLs for (``/responses``, ``/embeddings``, ...), remembered.
_PREPARED_URLS_KEPT: Final = 32


class OpenAIClient(AsyncOpenAI):
    """``AsyncOpenAI`` without the platform headers, preparing each path's URL once, and with
    streamed text deltas built without validating them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepared_urls: dict[str, tuple[httpx2.URL, httpx2.URL]] = {}

    def _prepare_url(self, url: str) -> httpx2.URL:
        """The SDK's URL for ``url`` (a path under ``base_url``), parsed once per path and base
        URL: the SDK parsed and merged the same URLs on every request, 3 % of the instructions
        of starting an answer (docs/performance.md)."""
        base = self.base_url
        prepared = self._prepared_urls.get(url)
        if prepared is None or prepared[0] is not base:
            if len(self._prepared_urls) >= _PREPARED_URLS_KEPT:
                self._prepared_urls.clear()  # paths with ids in them: keep only the latest
            prepared = (base, super()._prepare_url(url))
            self._prepared_urls[url] = prepared
        return prepared[1]

    def platform_headers(self) -> dict[str, str]:
        """None of the SDK's ``X-Stainless-*`` description of this host (its OS, architecture,
        Python version): any server OPENAI_BASE_URL names would learn them, and each request
        spent 3 % of the instructions of starting an answer on them (docs/performance.md)."""
        return {}

    def _process_response_data(
        self, *, data: object, cast_to: Any, response: httpx2.Response
    ) -> Any:
        if (
            cast_to is ResponseStreamEvent
            and type(data) is dict
            and not self._strict_response_validation
        ):
            buildable = _BUILDABLE.get(data.get("type"))  # type: ignore[arg-type]
            event = _built_as_is(*buildable, data) if buildable is not None else None
            if event is not None:
                return event
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
