"""Who the client is: the peer, or what a trusted proxy says about it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from api.client_address import client_address, rate_limit_key, trusted_networks

PROXIES = trusted_networks(("10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.7"))


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 443) if peer is not None else None,
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
    }


def test_untrusted_peer_is_the_client() -> None:
    assert client_address(scope("203.0.113.5"), PROXIES) == "203.0.113.5"


def test_untrusted_peer_cannot_spoof_forwarding_headers() -> None:
    spoofed = scope(
        "203.0.113.5",
        ("X-Forwarded-For", "198.51.100.1"),
        ("CloudFront-Viewer-Address", "198.51.100.2:443"),
    )
    assert client_address(spoofed, PROXIES) == "203.0.113.5"


def test_without_trusted_proxies_headers_are_ignored() -> None:
    request = scope("10.0.0.1", ("X-Forwarded-For", "198.51.100.1"))
    assert client_address(request, ()) == "10.0.0.1"


def test_a_request_object_works_like_its_scope() -> None:
    request = Request(scope("10.0.0.1", ("X-Forwarded-For", "198.51.100.1")))
    assert client_address(request, PROXIES) == "198.51.100.1"


@pytest.mark.parametrize("peer", ["testclient", "", "not an address"])
def test_peer_that_is_not_an_address_is_untrusted_and_kept_as_is(peer: str) -> None:
    request = scope(peer, ("X-Forwarded-For", "198.51.100.1"))
    assert client_address(request, PROXIES) == peer


def test_no_peer_at_all_is_unknown() -> None:
    assert client_address(scope(None), PROXIES) == "unknown"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("198.51.100.1:46532", "198.51.100.1"),
        ("2001:db8::1:443", "2001:db8::1"),
        ("2001:db8:0:0:0:0:0:1:443", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        (" 198.51.100.1:1 ", "198.51.100.1"),
        ("198.51.100.1", "198.51.100.1"),
        ("::ffff:198.51.100.1:443", "198.51.100.1"),
    ],
)
def test_cloudfront_viewer_address_from_a_trusted_peer(header: str, expected: str) -> None:
    request = scope("10.1.2.3", ("CloudFront-Viewer-Address", header))
    assert client_address(request, PROXIES, cloudfront=True) == expected


def test_cloudfront_viewer_address_wins_over_x_forwarded_for_behind_cloudfront() -> None:
    request = scope(
        "10.1.2.3",
        ("X-Forwarded-For", "198.51.100.9"),
        ("CloudFront-Viewer-Address", "198.51.100.1:443"),
    )
    assert client_address(request, PROXIES, cloudfront=True) == "198.51.100.1"


def test_cloudfront_viewer_address_is_ignored_behind_a_proxy_that_is_not_cloudfront() -> None:
    # nginx or a load balancer passes the client's own CloudFront-Viewer-Address through:
    # only the hop the proxy appended to X-Forwarded-For is the proxy's word.
    request = scope(
        "10.1.2.3",
        ("X-Forwarded-For", "198.51.100.9"),
        ("CloudFront-Viewer-Address", "198.51.100.1:443"),
    )
    assert client_address(request, PROXIES) == "198.51.100.9"
    only_viewer = scope("10.1.2.3", ("CloudFront-Viewer-Address", "198.51.100.1:443"))
    assert client_address(only_viewer, PROXIES) == "10.1.2.3"


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "198.51.100.1:port", "300.1.1.1:443", "[2001:db8::1:443", "2001:db8::1"],
)
def test_garbage_cloudfront_viewer_address_falls_back(garbage: str) -> None:
    only_viewer = scope("10.1.2.3", ("CloudFront-Viewer-Address", garbage))
    assert client_address(only_viewer, PROXIES, cloudfront=True) == "10.1.2.3"
    with_forwarded = scope(
        "10.1.2.3",
        ("CloudFront-Viewer-Address", garbage),
        ("X-Forwarded-For", "198.51.100.7"),
    )
    assert client_address(with_forwarded, PROXIES, cloudfront=True) == "198.51.100.7"


def test_forwarded_for_is_read_from_the_right() -> None:
    # The client put a fake address first; the proxy appended the real one.
    request = scope("10.0.0.1", ("X-Forwarded-For", "1.2.3.4, 198.51.100.1"))
    assert client_address(request, PROXIES) == "198.51.100.1"


def test_forwarded_for_skips_a_chain_of_trusted_proxies() -> None:
    request = scope(
        "10.0.0.1",
        ("X-Forwarded-For", "1.2.3.4, 198.51.100.1, 192.0.2.7, 10.9.9.9"),
    )
    assert client_address(request, PROXIES) == "198.51.100.1"


def test_forwarded_for_across_several_headers_is_one_list() -> None:
    request = scope(
        "10.0.0.1",
        ("X-Forwarded-For", "1.2.3.4, 198.51.100.1"),
        ("X-Forwarded-For", "10.2.2.2"),
    )
    assert client_address(request, PROXIES) == "198.51.100.1"


def test_forwarded_for_of_only_trusted_proxies_gives_the_leftmost() -> None:
    request = scope("10.0.0.1", ("X-Forwarded-For", "10.3.3.3, 10.2.2.2"))
    assert client_address(request, PROXIES) == "10.3.3.3"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("2001:db8::5", "2001:db8::5"),
        ("[2001:db8::5]:1234", "2001:db8::5"),
        ("198.51.100.1:8080", "198.51.100.1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),
    ],
)
def test_forwarded_for_entry_forms(entry: str, expected: str) -> None:
    request = scope("10.0.0.1", ("X-Forwarded-For", f"1.2.3.4, {entry}"))
    assert client_address(request, PROXIES) == expected


def test_ipv6_trusted_proxy_and_ipv6_client() -> None:
    request = scope("2001:db8:ffff::10", ("X-Forwarded-For", "2001:db8:1::abcd"))
    assert client_address(request, PROXIES) == "2001:db8:1::abcd"


@pytest.mark.parametrize(
    "forwarded",
    ["", " , ", "unknown", "198.51.100.1, garbage", "198.51.100.1, , 10.2.2.2", "1.2.3.4.5"],
)
def test_garbage_forwarded_for_falls_back_to_the_peer(forwarded: str) -> None:
    request = scope("10.0.0.1", ("X-Forwarded-For", forwarded))
    assert client_address(request, PROXIES) == "10.0.0.1"


def test_garbage_left_of_the_client_does_not_matter() -> None:
    request = scope("10.0.0.1", ("X-Forwarded-For", "garbage, 198.51.100.1, 10.2.2.2"))
    assert client_address(request, PROXIES) == "198.51.100.1"


def test_peer_is_returned_in_canonical_form() -> None:
    assert client_address(scope("2001:DB8:0::1"), PROXIES) == "2001:db8::1"
    assert client_address(scope("::ffff:203.0.113.5"), PROXIES) == "203.0.113.5"


def test_rate_limit_key_groups_ipv6_by_slash_64() -> None:
    assert rate_limit_key("203.0.113.5") == "203.0.113.5"
    assert rate_limit_key("2001:db8:1:2::abcd") == "2001:db8:1:2::/64"
    assert rate_limit_key("2001:db8:1:2:ffff::1") == rate_limit_key("2001:db8:1:2::abcd")
    assert rate_limit_key("testclient") == "testclient"
