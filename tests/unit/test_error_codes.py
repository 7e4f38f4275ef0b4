"""One table of error codes: every code a client can get has one HTTP status, and an HTTP-level
error is known by its status alone."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from api.errors import STATUS_BY_CODE, HttpErrorCode, error_response, http_error_response
from domain.errors import ErrorCode


def test_every_error_code_has_an_http_status() -> None:
    assert set(STATUS_BY_CODE) == set(ErrorCode) | set(HttpErrorCode)
    assert all(400 <= status <= 599 for status in STATUS_BY_CODE.values())


def test_http_level_codes_are_distinct_from_the_domains() -> None:
    assert not {code.value for code in HttpErrorCode} & {code.value for code in ErrorCode}


def test_each_http_level_status_names_one_code() -> None:
    statuses = [STATUS_BY_CODE[code] for code in HttpErrorCode]
    assert len(statuses) == len(set(statuses))


def test_an_http_error_body_carries_the_code_of_its_status() -> None:
    for code in HttpErrorCode:
        response = http_error_response(HTTPException(STATUS_BY_CODE[code], "detail"))
        assert response.status_code == STATUS_BY_CODE[code]
        assert response.body == error_response(code, "detail").body


def test_an_http_error_without_a_code_of_its_own_falls_back_by_class() -> None:
    assert b'"invalid_request"' in http_error_response(HTTPException(418, "x")).body
    assert b'"internal_error"' in http_error_response(HTTPException(500, "x")).body
