"""Failed sign-ins per client address: an address over the limit is refused for a while.

The teacher page and the analysts' dashboard take a token or a one-time code at sign-in, and their APIs a
bearer token on every request. Those are long random secrets, so guessing one is hopeless; this limit keeps
a script from trying at full speed and makes the trying visible. A failure is a ``401`` answered to a
request that presented a secret (an ``Authorization`` header, or a post to a sign-in path); a missing or
expired session cookie is not a guess and does not count. After ``SIGN_IN_MAX_FAILURES`` failures within
``SIGN_IN_WINDOW_S`` seconds an address gets ``429`` with ``Retry-After`` for every request that presents
a secret — a correct one too — until its oldest failure leaves the window. Pages, health checks and
signed-in sessions are not affected.

The address is the TCP peer's: behind an ingress or proxy that is the proxy's, so the limit then counts the
whole district's failures together. Nothing here is logged with an address.

Memory is bounded: at most ``max_addresses`` addresses are remembered, the longest idle forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from csync.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SignInThrottle:
    """Failures per address in a sliding window."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 50_000,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("a sign-in throttle needs max_failures >= 1 and window_s > 0")
        self.max_failures, self.window_s = max_failures, window_s
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInThrottle:
        return cls(settings.sign_in_max_failures, settings.sign_in_window_s)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after_s(self, address: str) -> int:
        """0 if ``address`` may try now, else the whole seconds until it may."""
        now = self._clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[-self.max_failures] + self.window_s - now))

    def failed(self, address: str) -> None:
        """One more failure of ``address``."""
        now = self._clock()
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self._max_addresses:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        times.append(now)


def throttle_middleware(throttle: SignInThrottle, sign_in_paths: frozenset[str]) -> Middleware:
    """An aiohttp middleware applying ``throttle`` to the requests that present a secret."""

    def presents_secret(request: web.Request) -> bool:
        return "Authorization" in request.headers or (
            request.method == "POST" and request.path in sign_in_paths
        )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not presents_secret(request):
            return await handler(request)
        address = request.remote or "unknown"
        wait = throttle.retry_after_s(address)
        if wait:
            return _refused(request, wait)
        try:
            response = await handler(request)
        except web.HTTPUnauthorized:
            throttle.failed(address)
            raise
        if response.status == 401:
            throttle.failed(address)
        return response

    return middleware


def _refused(request: web.Request, wait: int) -> web.Response:
    headers = {"Retry-After": str(wait), "Cache-Control": "no-store"}
    message = f"Too many failed sign-ins from this address. Try again in {wait} s."
    if request.path.startswith("/v1/"):
        return web.json_response({"error": message}, status=429, headers=headers)
    return web.Response(text=message, status=429, headers=headers)
