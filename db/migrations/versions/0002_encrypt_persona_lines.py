"""A person's own persona lines are their words: stored as text, so they can be encrypted at rest
like message text (db.crypto.EncryptedJSON). Rows written before stay readable as plain JSON.

Downgrading turns the column back into JSON; lines encrypted meanwhile cannot be JSON without the
key, so they are cleared first (the person keeps their chosen built-in persona, if any).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.alter_column(
            "persona_lines",
            type_=sa.Text(),
            existing_type=sa.JSON(),
            existing_nullable=True,
            postgresql_using="persona_lines::text",
        )


def downgrade() -> None:
    op.execute("UPDATE users SET persona_lines = NULL WHERE persona_lines LIKE 'enc:v1:%'")
    with op.batch_alter_table("users") as users:
        users.alter_column(
            "persona_lines",
            type_=sa.JSON(),
            existing_type=sa.Text(),
            existing_nullable=True,
            postgresql_using="persona_lines::json",
        )
