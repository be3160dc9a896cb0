"""The OpenAI chat-completions wire format: validated requests, responses, errors.

Fields the worker cannot honour (n > 1, tools, stop sequences...) are refused with a 400
rather than silently ignored. `top_k`, `min_tokens`, `num_beams` and `no_repeat_ngram_size`
are extras in the style of vLLM's sampling parameters.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inference.api import ChatMessage, GenerationParams


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask of the worker."""

    max_body_bytes: int = 256 * 1024
    max_messages: int = 128
    max_message_chars: int = 8000
    max_tokens: int = 256
    max_beams: int = 10


class ApiError(Exception):
    """A request the worker refuses, rendered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Strict: a field of the wrong JSON type is refused, not converted ("stream": "yes" is not true).
_STRICT = ConfigDict(extra="forbid", strict=True)


class MessageIn(BaseModel):
    model_config = _STRICT

    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be empty")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # JSON can carry a lone surrogate ("\ud800"); no tokenizer reads it
            raise ValueError("content must be valid Unicode text") from None
        return value


class StreamOptions(BaseModel):
    model_config = _STRICT

    include_usage: bool = False


class ChatRequest(BaseModel):
    """POST /v1/chat/completions."""

    model_config = _STRICT

    model: str | None = None
    messages: list[MessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    num_beams: int | None = Field(default=None, ge=1)
    min_tokens: int | None = Field(default=None, ge=0)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def params(self) -> GenerationParams:
        return GenerationParams(
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            top_k=self.top_k,
            num_beams=self.num_beams,
            min_tokens=self.min_tokens,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )

    def chat(self) -> list[ChatMessage]:
        return [ChatMessage(m.role, m.content) for m in self.messages]


def parse_request(payload: Any, limits: Limits) -> ChatRequest:
    """Validate a decoded JSON body against the schema and the worker's limits."""
    if not isinstance(payload, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        request = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(400, f"{param or 'body'}: {first['msg']}", param=param) from None
    if len(request.messages) > limits.max_messages:
        raise ApiError(400, f"at most {limits.max_messages} messages per request", param="messages")
    for index, message in enumerate(request.messages):
        if len(message.content) > limits.max_message_chars:
            raise ApiError(
                400,
                f"messages.{index}.content is longer than {limits.max_message_chars} characters",
                param=f"messages.{index}.content",
            )
    if not any(m.role == "user" for m in request.messages):
        raise ApiError(400, "messages must contain at least one user message", param="messages")
    wanted = request.max_completion_tokens or request.max_tokens
    if wanted is not None and wanted > limits.max_tokens:
        raise ApiError(400, f"max_tokens must be at most {limits.max_tokens}", param="max_tokens")
    if request.num_beams is not None and request.num_beams > limits.max_beams:
        raise ApiError(400, f"num_beams must be at most {limits.max_beams}", param="num_beams")
    if request.num_beams and request.num_beams > 1 and request.stream:
        raise ApiError(400, "beam search cannot be streamed", param="stream")
    return request


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(
    id: str, model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk_body(
    id: str, model: str, delta: dict[str, str], finish_reason: str | None = None, usage_: dict[str, int] | None = None
) -> dict[str, Any]:
    choices = [] if usage_ else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage_:
        body["usage"] = usage_
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
