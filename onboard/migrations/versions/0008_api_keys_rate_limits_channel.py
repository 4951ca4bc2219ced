"""API keys, rate limits held in the database, and the channel of every message

Issue #19 item 2 (the REST API):

- ``message.channel``: where a message came in (``web``, ``api``, ``batch``,
  ``support``), NOT NULL with a server default of ``web``, so rows stored
  before read ``web``, which is where they came from; the support bot's
  conversations (``kind = 'support'``) are set to ``support``. The column
  joins the dashboard's covering index (``ix_message_dashboard``): the
  dashboard filters every figure by channel and splits the overview by it,
  and a column outside the index sends PostgreSQL from an index-only scan to
  the table's rows (and SQLite from the covering index to the table), the
  cost 0004 measured at a million messages. It goes last, after ``band``:
  the leading columns (kind, role, created_at) are what the range scans
  seek on, and a channel filter is a residual test on the index entries.
  Measured on ``benchmarks/dashboard.py``'s million messages (SQLite, 15% of
  answers set to api or batch, best of 7, on a shared machine at load 6.6):
  the split by channel over a year 447 ms with the column in the index, 926
  ms without; a 30-day overview filtered by channel 166 ms against 399 ms
  (the plan: ``SEARCH message USING COVERING INDEX ix_message_dashboard``).
- ``api_key``: a program's key; only a SHA-256 of its secret is stored.
- ``rate_window``: requests per key per minute, counted by one upsert, so
  several app processes share one limit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 21:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString
When = sqlmodel.sql.sqltypes.UTCDateTime

BEFORE = [
    "kind", "role", "created_at", "status", "user_id", "team", "conversation_id", "reply_to", "answerer", "model",
    "prompt_version", "input_tokens", "output_tokens", "latency_ms", "ttft_ms", "band",
]


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', String(length=16), server_default='web', nullable=False))
    op.execute("UPDATE message SET channel = 'support' WHERE kind = 'support'")
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_dashboard')
        batch_op.create_index('ix_message_dashboard', [*BEFORE, 'channel'], unique=False)

    op.create_table('api_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', String(length=100), nullable=False),
    sa.Column('prefix', String(length=16), nullable=False),
    sa.Column('hash', String(length=64), nullable=False),
    sa.Column('team', String(length=128), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.Column('on_behalf', sa.Boolean(), nullable=False),
    sa.Column('rate_per_minute', sa.Integer(), nullable=True),
    sa.Column('created_at', When(), nullable=False),
    sa.Column('created_by', String(length=320), nullable=True),
    sa.Column('expires_at', When(), nullable=True),
    sa.Column('revoked_at', When(), nullable=True),
    sa.Column('last_used_at', When(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash', name='uq_api_key_hash'),
    )
    op.create_table('rate_window',
    sa.Column('key_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('minute', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key_id', 'minute'),
    )


def downgrade() -> None:
    op.drop_table('rate_window')
    op.drop_table('api_key')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_dashboard')
        batch_op.create_index('ix_message_dashboard', BEFORE, unique=False)
        batch_op.drop_column('channel')
