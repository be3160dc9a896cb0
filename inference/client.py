"""The bot's client for any OpenAI-compatible chat server: our worker, vLLM, TGI.

Failures the server may get over (connection refused or dropped, 5xx, 429 overload, a timed-out
connect) are retried with exponential backoff, honouring Retry-After; a 4xx is the request's
own fault and is never retried; a reply that is slow to come is not retried either, since the
server may still be working on it. When no reply can be had, BackendError.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from inference.api import BackendError, ChatMessage, Completion, GenerationParams

log = logging.getLogger(__name__)

EXTRA_PARAMS = ("top_k", "num_beams", "min_tokens", "no_repeat_ngram_size")


class _Retryable(Exception):
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class OpenAIChatClient:
    """ChatBackend over HTTP. `base_url` may end in /v1 or not; with no `model` the server's
    first listed model is used (asked once)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        api_key: str | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self._model = model
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._model_lock = asyncio.Lock()

    @property
    def model_name(self) -> str:
        return self._model or "unknown"

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        body: dict[str, Any] = {
            "model": await self._resolve_model(),
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        for name in ("max_tokens", "temperature", "top_p", "seed", *EXTRA_PARAMS):
            if (value := getattr(params, name)) is not None:
                body[name] = value
        reply = await self._call("POST", "/chat/completions", body)
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            used = reply.get("usage") or {}
            return Completion(
                text=text.strip(),
                model=reply.get("model") or body["model"],
                prompt_tokens=int(used.get("prompt_tokens", 0)),
                completion_tokens=int(used.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # e.g. content not a string
            raise BackendError(f"{self.base_url} answered without a chat completion ({exc!r})") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _resolve_model(self) -> str:
        async with self._model_lock:
            if self._model is None:
                listing = await self._call("GET", "/models")
                try:
                    self._model = str(listing["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as exc:
                    raise BackendError(f"{self.base_url}/models lists no model ({exc!r})") from None
        return self._model

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                return await self._once(method, url, body)
            except _Retryable as exc:
                if attempt == self.retries:
                    raise BackendError(f"{method} {url} failed after {attempt + 1} attempts: {exc}") from None
                delay = exc.delay if exc.delay is not None else self.backoff * 2**attempt * random.uniform(0.8, 1.2)
                log.warning(
                    "%s %s failed (%s); retry %d/%d in %.2fs", method, url, exc, attempt + 1, self.retries, delay
                )
                await asyncio.sleep(min(delay, self.max_backoff))
        raise AssertionError("unreachable")

    async def _once(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        session = self._session_()
        try:
            async with session.request(method, url, json=body, headers=self._headers) as response:
                if response.status == 200:
                    return await response.json(content_type=None)
                if response.status == 429 or response.status >= 500:
                    # The status only: these are logged, and a server's error text may quote the request.
                    raise _Retryable(f"HTTP {response.status}", _retry_after(response))
                raise BackendError(
                    f"{method} {url} was refused: HTTP {response.status}: {await _error_message(response)}"
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise _Retryable(f"connect timed out ({exc.__class__.__name__})") from None
        except (TimeoutError, aiohttp.SocketTimeoutError):
            raise BackendError(f"{method} {url} timed out after {self.timeout.total}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise _Retryable(f"connection failed ({exc.__class__.__name__})") from None
        except (aiohttp.ClientPayloadError, aiohttp.ContentTypeError, ValueError) as exc:
            raise BackendError(f"{method} {url} sent an unreadable answer ({exc.__class__.__name__})") from None

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The OpenAI-shaped error's message, or the start of whatever the server sent."""
    text = await response.text(errors="replace")
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text[:200]


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None
