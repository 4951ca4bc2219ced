"""message band: answered, unsure (the middle band) or abstained

An answer records the band the assistant put it in (issue #18): ``answered``,
``unsure`` (the closest passages quoted under a warning that they may not
answer) or ``abstained`` (nothing related). Answers stored before have none:
they were answered or abstained, which their status says. The dashboard's
covering index gains the column, so its figures stay index-only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BEFORE = [
    "kind", "role", "created_at", "status", "user_id", "team", "conversation_id", "reply_to", "answerer", "model",
    "prompt_version", "input_tokens", "output_tokens", "latency_ms", "ttft_ms",
]


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('band', sa.String(length=16), nullable=True))
        batch_op.drop_index('ix_message_dashboard')
        batch_op.create_index('ix_message_dashboard', [*BEFORE, 'band'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_dashboard')
        batch_op.create_index('ix_message_dashboard', BEFORE, unique=False)
        batch_op.drop_column('band')
