"""The minimisation of a web URL (CONTRACT §2): a device's ``url`` becomes the ``sub_app`` host, and the rest
of the URL (path, query, userinfo, port) is never kept.

Hosts are cached by URL in a bounded dict (a heartbeat repeats its page's URL), which the envelope fast path
(:mod:`schemas.envelope_columns`) reads directly.
"""

from __future__ import annotations

from typing import Any, Final

from schemas.outcome import MAX_SUB_APP_CHARS, MAX_URL_CHARS

HOST_CACHE_MAX: Final = 1 << 16
# Bounds the URL cache's memory to about HOST_CACHE_MAX * 256 characters.
CACHED_URL_CHARS: Final = 256
_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_UNSEEN: Final[Any] = object()

url_hosts: dict[str, str | None] = {}
"""URL → its host (None: invalid), for URLs up to :data:`CACHED_URL_CHARS`; cleared when full."""


def web_host(url: str) -> str | None:
    """The ``sub_app`` of a web URL (lower-cased host, no leading ``www.``), or ``None`` if invalid.

    Valid: printable ASCII without spaces, ≤ 2048 chars, scheme http or https, a non-empty host of
    ``[a-z0-9.-_]`` (or a bracketed IPv6 literal), an optional numeric port, optional userinfo
    (dropped). Answers for URLs up to 256 chars are cached: heartbeats repeat their page's URL.
    """
    cached = url_hosts.get(url, _UNSEEN)
    if cached is not _UNSEEN:
        return cached  # type: ignore[no-any-return]
    host = _url_host(url)
    if len(url) <= CACHED_URL_CHARS:
        if len(url_hosts) >= HOST_CACHE_MAX:
            url_hosts.clear()
        url_hosts[url] = host
    return host


def bounded_url(url: Any) -> bool:
    """Whether an ignored ``url`` (on a non-web app: not validated) is a short printable ASCII string or null.

    Such a url keeps its event far below 8 KiB; any other may not, so it is measured.
    """
    return url is None or (
        type(url) is str and len(url) <= MAX_URL_CHARS and url.isascii() and url.isprintable()
    )


def _url_host(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS or not url.isascii() or " " in url or not url.isprintable():
        return None
    head = url[:8].lower()
    if head.startswith("https://"):
        start = 8
    elif head.startswith("http://"):
        start = 7
    else:
        return None
    end = url.find("/", start)
    authority = url[start:] if end < 0 else url[start:end]
    return _authority_host(authority.partition("?")[0].partition("#")[0])


def _authority_host(authority: str) -> str | None:
    at = authority.rfind("@")
    if at >= 0:
        authority = authority[at + 1 :]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host, port = authority[: close + 1].lower(), authority[close + 1 :]
        if port and not (port[0] == ":" and (len(port) == 1 or port[1:].isdigit())):
            return None
        inner = host[1:-1]
        if not inner or not all(c in "0123456789abcdef:." for c in inner):
            return None
        return host
    host, colon, port = authority.partition(":")
    if colon and port and not port.isdigit():
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host or host.startswith(".") or ".." in host or not _HOST_CHARS.issuperset(host):
        return None
    if host.startswith("www.") and len(host) > 4:
        host = host[4:]
    if len(host) > MAX_SUB_APP_CHARS:
        return None
    return host
