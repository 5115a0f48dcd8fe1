"""OutboundPolicy address checks and the Retry-After parser, without a network."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.handlers.outbound import OutboundPolicy, retry_after_seconds

EMPTY = OutboundPolicy()


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700:4700::1111"])
def test_public_addresses_are_admitted(address: str) -> None:
    assert EMPTY.admits("example.com", ipaddress.ip_address(address)) is True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.8.9.10",
        "::1",
        "10.1.2.3",  # private
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "fe80::1",
        "fd00::1",  # IPv6 unique local
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # unspecified
        "::",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
    ],
)
def test_non_public_addresses_are_refused_by_an_empty_policy(address: str) -> None:
    assert EMPTY.admits("example.com", ipaddress.ip_address(address)) is False


ALLOWING = OutboundPolicy.parse("10.0.0.0/8, internal.example.com, ::1", 4096)


def test_parse_splits_networks_from_host_names() -> None:
    assert ALLOWING.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert ALLOWING.allowed_hosts == frozenset({"internal.example.com"})
    assert ALLOWING.max_response_bytes == 4096


@pytest.mark.parametrize(
    "host,address,expected",
    [
        ("svc.local", "10.1.2.3", True),
        ("svc.local", "10.255.255.255", True),
        ("svc.local", "::1", True),
        ("internal.example.com", "192.168.1.1", True),
        ("internal.example.com", "127.0.0.1", True),
        ("Internal.Example.COM", "169.254.169.254", True),
        ("svc.local", "192.168.1.1", False),
        ("svc.local", "127.0.0.1", False),
        ("svc.local", "11.0.0.0", True),  # public anyway
        ("other.example.com", "172.16.0.1", False),
        ("internal.example.com.evil.test", "192.168.1.1", False),
    ],
)
def test_an_allow_list_admits_its_networks_and_host_names_only(host: str, address: str, expected: bool) -> None:
    assert ALLOWING.admits(host, ipaddress.ip_address(address)) is expected


def test_parse_ignores_blanks_and_lowercases_host_names() -> None:
    policy = OutboundPolicy.parse(" , 192.168.0.0/16,, Build.Internal ,  ,", 10)
    assert policy.allowed_networks == (ipaddress.ip_network("192.168.0.0/16"),)
    assert policy.allowed_hosts == frozenset({"build.internal"})
    assert policy.admits("x", ipaddress.ip_address("192.168.1.1")) is True
    assert policy.admits("x", ipaddress.ip_address("10.0.0.1")) is False


def test_parse_accepts_a_host_address_with_bits_set_past_the_prefix() -> None:
    policy = OutboundPolicy.parse("10.1.2.3/8", 10)
    assert policy.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_an_empty_allow_list_admits_nothing_private() -> None:
    policy = OutboundPolicy.parse("", 10)
    assert policy.allowed_networks == () and policy.allowed_hosts == frozenset()
    assert policy.admits("localhost", ipaddress.ip_address("127.0.0.1")) is False


@pytest.mark.parametrize("value,expected", [("3", 3.0), ("0", 0.0), ("-5", None), ("120", 120.0), ("2.5", 2.5)])
def test_retry_after_in_seconds(value: str, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_as_a_future_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    seconds = retry_after_seconds(when)
    assert seconds is not None and 8 <= seconds <= 11


def test_retry_after_as_a_past_http_date_is_zero() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Wed, 99 Foo 2015", "3 seconds"])
def test_retry_after_that_is_not_a_delay_is_none(value: str | None) -> None:
    assert retry_after_seconds(value) is None


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_retry_after_that_is_not_finite_is_none(value: str) -> None:
    assert retry_after_seconds(value) is None


@pytest.mark.parametrize(
    "address,admitted",
    [
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping 169.254.169.254
        ("64:ff9b::a00:1", False),  # NAT64 wrapping 10.0.0.1
        ("2002:c0a8:101::1", False),  # 6to4 wrapping 192.168.1.1
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::808:808", True),  # NAT64 wrapping 8.8.8.8
    ],
)
def test_ipv6_addresses_are_judged_by_the_ipv4_they_carry(address: str, admitted: bool) -> None:
    assert OutboundPolicy().admits("example.com", ipaddress.ip_address(address)) is admitted
