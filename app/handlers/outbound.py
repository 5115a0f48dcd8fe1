"""Outbound HTTP for handlers: address checks, redirects, size caps, a circuit breaker.

Every hop (redirects included) is resolved first, every address it resolves to
must be public unless the allow-list admits it, and the connection goes to the
address that was checked (with the original Host header, and the hostname for
TLS), so a DNS answer that changes between check and connect cannot smuggle a
private address in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from redis import Redis
from redis.exceptions import RedisError

from app.handlers.registry import HandlerError

log = logging.getLogger(__name__)
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OutboundPolicy:
    """Which private destinations are admitted, and how much of a response is read."""

    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    max_response_bytes: int = 1024 * 1024

    @classmethod
    def parse(cls, allowlist: str, max_response_bytes: int) -> OutboundPolicy:
        """From a comma-separated list of CIDRs, addresses and host names."""
        networks, hosts = [], set()
        for item in (part.strip() for part in allowlist.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower())
        return cls(tuple(networks), frozenset(hosts), max_response_bytes)

    def admits(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if host.lower() in self.allowed_hosts or any(address in net for net in self.allowed_networks):
            return True
        return all(a.is_global and not a.is_multicast for a in (address, *_embedded_ipv4(address)))


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64): the packet
    may end up there, so they must be public too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found.extend(address.teredo)
    if any(address in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: dict[str, str]
    body: Any  # parsed JSON, else text
    elapsed_ms: float
    url: str


def resolve(host: str, port: int, policy: OutboundPolicy, trusted: bool = False) -> str:
    """The address to connect to: every address the host resolves to must be admitted
    (a name resolving to one public and one private address is refused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise HandlerError(f"cannot resolve {host!r}: {err}", retryable=True, category="connection") from err
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not trusted:
        for address in addresses:
            if not policy.admits(host, address):
                raise HandlerError(
                    f"refused: {host} resolves to {address}, a non-public address "
                    "(add it to OUTBOUND_ALLOWLIST to allow it)",
                    category="forbidden_destination",
                )
    return str(addresses[0])


def request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    content: bytes | None = None,
    timeout: float = 10.0,
    follow_redirects: bool = True,
    trusted: bool = False,
) -> Response:
    """One HTTP exchange, following redirects by hand so each hop is checked."""
    started = time.perf_counter()
    origin = urlsplit(url).hostname
    headers = dict(headers or {})
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HandlerError(f"refused: {url!r} is not an http(s) URL", category="validation")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve(parts.hostname, port, policy, trusted)
        pinned = urlunsplit(
            (
                parts.scheme,
                f"[{address}]:{port}" if ":" in address else f"{address}:{port}",
                parts.path or "/",
                parts.query,
                "",
            )
        )
        if parts.hostname != origin:
            # Credentials were meant for the first host, not wherever it redirects.
            headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
        sent_headers = {**headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        try:
            # Merge, not replace: httpx drops the URL's own query when given params.
            target = httpx.URL(pinned).copy_merge_params(params) if params else httpx.URL(pinned)
            with client.stream(
                method,
                target,
                headers=sent_headers,
                content=content,
                timeout=timeout,
                extensions={"sni_hostname": parts.hostname},
            ) as response:
                if follow_redirects and response.status_code in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    if response.status_code == 303 or (response.status_code in (301, 302) and method != "HEAD"):
                        method, content = ("GET" if method != "HEAD" else "HEAD"), None
                    params = None  # the Location carries its own query
                    continue
                raw = _read_capped(response, policy.max_response_bytes)
                return Response(
                    response.status_code,
                    dict(response.headers),
                    _parse(raw, response.headers.get("content-type", "")),
                    round((time.perf_counter() - started) * 1000, 1),
                    url,
                )
        except httpx.TimeoutException as err:
            raise HandlerError(
                f"{method} {url}: timed out after {timeout}s", retryable=True, category="timeout"
            ) from err
        except httpx.TransportError as err:
            raise HandlerError(
                f"{method} {url}: {type(err).__name__}: {err}", retryable=True, category="connection"
            ) from err
    raise HandlerError(f"{method} {url}: more than {MAX_REDIRECTS} redirects", category="http_3xx")


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise HandlerError(f"the response is larger than the limit of {limit} bytes", category="response_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


_DELAY_SECONDS = re.compile(r"^\s*(\d{1,9}(?:\.\d+)?)\s*$")


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if neither."""
    if not value:
        return None
    seconds = _DELAY_SECONDS.match(value)
    if seconds:
        return float(seconds[1])
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class CircuitBreaker:
    """Per target host, shared by every worker through Redis: after `threshold` failures
    in a row the circuit opens for `cooldown` seconds and calls fail fast (retryable,
    retry_after = the time left); then one probe is let through, and its success
    closes the circuit (its failure opens it again)."""

    def __init__(self, redis: Redis | None, threshold: int, cooldown: float) -> None:
        self.redis, self.threshold, self.cooldown = redis, threshold, cooldown

    @staticmethod
    def key(host: str) -> str:
        return f"stepwise:circuit:{host.lower()}"

    def before(self, host: str) -> None:
        """Fail fast while the circuit is open; let one probe through when the cool-down is over."""
        if self.redis is None:
            return
        try:
            opened_until = self.redis.hget(self.key(host), "open_until")
            if opened_until is None:
                return
            left = float(opened_until) - time.time()
            if left > 0:
                raise _open(host, left)
            if not self.redis.set(f"{self.key(host)}:probe", "1", nx=True, ex=max(int(self.cooldown), 1)):
                raise _open(host, 1.0)  # another call is probing; try again shortly
        except RedisError:
            return  # no breaker beats no calls: Redis down means the breaker steps aside

    def success(self, host: str) -> None:
        if self.redis is None:
            return
        with contextlib.suppress(RedisError):
            self.redis.delete(self.key(host), f"{self.key(host)}:probe")

    def failure(self, host: str) -> None:
        if self.redis is None:
            return
        key = self.key(host)
        try:
            failures = self.redis.hincrby(key, "failures", 1)
            if failures >= self.threshold:
                log.warning("circuit for %s open: %d failures in a row; calls fail fast for %.0f s",
                            host, failures, self.cooldown)  # fmt: skip
                pipe = self.redis.pipeline()
                pipe.hset(key, "open_until", time.time() + self.cooldown)
                pipe.delete(f"{key}:probe")
                pipe.expire(key, int(self.cooldown * 10) + 60)
                pipe.execute()
        except RedisError:
            pass

    def state(self, host: str) -> str:
        """closed, open or half_open (for metrics and tests)."""
        if self.redis is None:
            return "closed"
        opened_until = self.redis.hget(self.key(host), "open_until")
        if opened_until is None:
            return "closed"
        return "open" if float(opened_until) > time.time() else "half_open"


def _open(host: str, left: float) -> HandlerError:
    return HandlerError(
        f"circuit open for {host}: too many failures in a row; next try in {left:.1f}s",
        retryable=True,
        retry_after=left,
        category="circuit_open",
    )
