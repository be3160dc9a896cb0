"""PTB's transport to the Bot API on aiohttp instead of httpx.

The service already runs aiohttp; profiling `supportbot bench bot --channel-only` showed httpx,
httpcore, anyio and h11 taking about 40% of the Telegram channel's CPU per update. PTB supports
swapping its transport through `BaseRequest`; this one keeps PTB's contract: (status, body) back,
TimedOut for timeouts, NetworkError for anything else on the way. The bot sends no files, so
multipart uploads are not supported. Parameters go as one JSON body (the Bot API takes JSON as well as
forms): PTB encodes it in one json.dumps, where a form cost a urlencode of every field.
"""

from __future__ import annotations

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 30.0
_JSON = {"Content-Type": "application/json"}


def _or(value: ODVInput[float], default: float) -> float | None:
    return default if isinstance(value, DefaultValue) else value


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded connection pool; see the module docstring."""

    __slots__ = ("_pool_size", "_session")

    def __init__(self, connection_pool_size: int) -> None:
        self._pool_size = connection_pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float:
        return READ_TIMEOUT_S

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("AiohttpRequest is not initialized")
        if request_data is not None and request_data.contains_files:
            raise NotImplementedError("this bot sends no files")
        connect = _or(connect_timeout, CONNECT_TIMEOUT_S)
        pool = _or(pool_timeout, POOL_TIMEOUT_S)
        timeout = aiohttp.ClientTimeout(
            connect=None if connect is None or pool is None else connect + pool,  # aiohttp counts the pool wait here
            sock_connect=connect,
            sock_read=_or(read_timeout, READ_TIMEOUT_S),  # aiohttp has no write timeout: the answer's wait covers it
        )
        data = request_data.json_payload if request_data is not None else None
        headers = _JSON if data is not None else None
        try:
            async with self._session.request(method, url, data=data, headers=headers, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
