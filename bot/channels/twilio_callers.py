"""Who is calling or texting: one person per phone number, for calls and SMS alike.

A number is never stored in the clear as an identity: the user's external id is a keyed hash of it
(`db.crypto.lookup_hash`), and the number itself goes to `User.contact`, encrypted when a key is set,
only so operators' text messages can reach the person. Calls and texts share the identity (channel
"phone") because a person who texts and then calls from the same number is the same person: one
history, one persona, one opt-out, one record of risk for the operators.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels.twilio_texts import PhoneTexts
from bot.crisis.helplines import INTERNATIONAL, HelplineDirectory
from bot.texts import builtin_personas
from db import crypto, repo
from db.engine import Database
from db.models import Persona, User

CHANNEL = "phone"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True, slots=True)
class Caller:
    """A person on the line or texting, as the webhook's From tells."""

    external_id: str
    number: str | None  # E.164; None when withheld or not a phone number
    locale: str  # from the number's prefix until the person's stored language is known
    country: str | None  # ISO 3166 alpha-2 when the crisis layer's helplines know the country
    emergency: str  # that country's emergency number (112 when unknown)


@cache
def helplines() -> HelplineDirectory:
    """The crisis layer's directory: a number's country and its emergency number."""
    return HelplineDirectory.load()


def identify(form: Mapping[str, str], texts: PhoneTexts) -> Caller:
    """The caller behind a webhook. A withheld number is known only for the one call (or message)."""
    sender = form.get("From", "").strip()
    if not sender or texts.is_withheld(sender):
        once = form.get("CallSid") or form.get("MessageSid") or form.get("SmsSid") or ""
        external_id, number = crypto.lookup_hash(f"withheld:{once}"), None
    else:
        external_id, number = crypto.lookup_hash(sender), sender if _E164.match(sender) else None
    resources = helplines().resources(phone=number)
    country = None if resources.country == INTERNATIONAL else resources.country
    return Caller(external_id, number, texts.locale_for(number), country, resources.emergency.number)


@dataclass(frozen=True, slots=True)
class Known:
    """What the database knows about a caller when a call or message starts."""

    user_id: int
    locale: str
    opted_out: bool
    persona_key: str | None  # None: the person's own persona lines
    returning: bool


async def remember(db: Database, caller: Caller) -> Known:
    """Find or create the caller's user, filling in language, country and (encrypted) number once."""
    async with db.transaction() as session:
        user = await repo.find_user(session, CHANNEL, caller.external_id)
        returning = user is not None
        if user is None:
            user = await repo.get_or_create_user(
                session, CHANNEL, caller.external_id, locale=caller.locale, contact=caller.number
            )
        user.locale = user.locale or caller.locale
        user.country = user.country or caller.country
        return Known(user.id, user.locale, user.opted_out, await _persona_key(session, user), returning)


async def set_opted_out(db: Database, caller: Caller, opted_out: bool) -> None:
    """Record an SMS STOP (or START) and audit it."""
    async with db.transaction() as session:
        user = await repo.get_or_create_user(
            session, CHANNEL, caller.external_id, locale=caller.locale, contact=caller.number
        )
        user.opted_out = opted_out
        await repo.audit(session, user_id=user.id, actor="user", action="sms_opt_out" if opted_out else "sms_opt_in")


async def record(db: Database, caller: Caller, action: str, **detail: str | int) -> None:
    """Put a call event (its end, a transfer's outcome) on the caller's audit trail."""
    async with db.transaction() as session:
        user = await repo.find_user(session, CHANNEL, caller.external_id)
        if user is not None:
            conversation = await repo.current_conversation(session, user.id)  # never a new one
            escalation = await repo.active_escalation(session, conversation.id) if conversation else None
            await repo.audit(
                session,
                user_id=user.id,
                conversation_id=conversation.id if conversation else None,
                escalation_id=escalation.id if escalation else None,
                actor="twilio",
                action=action,
                **detail,
            )


async def _persona_key(session: AsyncSession, user: User) -> str | None:
    if user.persona_lines:
        return None
    persona = await session.get(Persona, user.persona_id) if user.persona_id else None
    return persona.key if persona else builtin_personas()[0].key
