"""Thin ``Annotated`` dependencies: routes get wired objects, never build adapters."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from application.ask import AskApplicant
from application.review import ReviewConversations
from infrastructure.bootstrap import Container


def _container(request: Request) -> Container:
    container: Container = request.state.container
    return container


ContainerDep = Annotated[Container, Depends(_container)]


def _ask(container: ContainerDep) -> AskApplicant:
    return container.ask


def _review(container: ContainerDep) -> ReviewConversations:
    return container.review


AskDep = Annotated[AskApplicant, Depends(_ask)]
ReviewDep = Annotated[ReviewConversations, Depends(_review)]

_bearer = HTTPBearer(auto_error=False, description="The ADMIN_TOKEN setting.")


def _require_admin(
    container: ContainerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer ``ADMIN_TOKEN``, compared in constant time; without the setting, no admin API."""
    expected = container.settings.admin_token
    if expected is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Send 'Authorization: Bearer <ADMIN_TOKEN>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


AdminDep = Depends(_require_admin)
