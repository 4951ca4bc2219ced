"""message client key: a question sent again is stored once

A page that could not tell whether its question was stored (the database
went away during the commit, whose acknowledgement was lost) keeps it as a
draft, and the person sends it again. Each question carries the key the page
gave it when it was typed; a question whose key this person has already
stored is that question, not a new one (benchmarks/load.py: 2 questions of
500 stored twice across a PostgreSQL restart, each leaving one unanswered).
Unique per person: NULLs (messages without a key) never collide.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 19:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_key', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_message_user_id_client_key', ['user_id', 'client_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('uq_message_user_id_client_key')
        batch_op.drop_column('client_key')
