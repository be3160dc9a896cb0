"""A person's words at rest (message text, their own persona lines, their number): Fernet-encrypted
when SUPPORTBOT_ENCRYPTION_KEY is set, plus keyed lookup hashes.

The key is process-wide because SQLAlchemy column types are process-wide; `configure` is called
once at start-up. Rows written before a key was set stay readable (they carry no prefix).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_PREFIX = "enc:v1:"
_fernet: Fernet | None = None
_hash_key: bytes = b"supportbot-lookup-v1"


def _derive(key: str, purpose: bytes) -> bytes:
    return hashlib.sha256(purpose + b"\0" + key.encode()).digest()


def configure(key: str | None) -> None:
    """Set (or clear) the encryption key; any passphrase works, a Fernet key is not required."""
    global _fernet, _hash_key
    if key:
        _fernet = Fernet(base64.urlsafe_b64encode(_derive(key, b"fernet")))
        _hash_key = _derive(key, b"lookup")
    else:
        _fernet = None
        _hash_key = b"supportbot-lookup-v1"


def fingerprint() -> str:
    """Names the configured key without revealing it ("none" without one): a database remembers it,
    because rows written under one key cannot be read, nor phone users found, under another."""
    return "none" if _fernet is None else _derive(_hash_key.hex(), b"fingerprint").hex()[:32]


def lookup_hash(value: str) -> str:
    """A keyed hash to find a row by a secret value (a phone number) without storing the value."""
    return hmac.new(_hash_key, value.encode(), hashlib.sha256).hexdigest()


class DecryptionError(Exception):
    """Stored text was encrypted with another key."""


class EncryptedText(TypeDecorator[str]):
    """Text that is encrypted on the way into the database when a key is configured."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or _fernet is None:
            return value
        return _PREFIX + _fernet.encrypt(value.encode()).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or not value.startswith(_PREFIX):
            return value
        if _fernet is None:
            raise DecryptionError("stored text is encrypted but SUPPORTBOT_ENCRYPTION_KEY is not set")
        try:
            return _fernet.decrypt(value[len(_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise DecryptionError("stored text was encrypted with a different SUPPORTBOT_ENCRYPTION_KEY") from exc


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON value written by the person (their own persona lines), stored as text and encrypted
    like `EncryptedText`; plain JSON written before a key was set stays readable."""

    impl = Text
    cache_ok = True
    _text = EncryptedText()

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self._text.process_bind_param(json.dumps(value, ensure_ascii=False), dialect)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        plain = self._text.process_result_value(value, dialect)
        return None if plain is None else json.loads(plain)
