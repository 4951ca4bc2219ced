"""dashboard indexes

Measured with ``benchmarks/dashboard.py`` on a million messages:

- ``ix_message_dashboard`` replaces ``ix_message_kind_role_created_at``: the
  same leading columns, then every column the dashboard aggregates, so its
  queries are index-only (PostgreSQL 30-day page 806 -> 432 ms; SQLite 654 ->
  588 ms, the Usage tab 1109 -> 928 ms).
- ``ix_message_reply_to``: deleting questions (``onboard db purge``) looked up
  their answers by a full scan each (500 deletes: 22 s -> 0.13 s on 100k rows).
- PostgreSQL only: statistics on ``app_user.groups::text``, so the planner
  knows how many people a ``LIKE '%"pilot"%'`` group filter matches (it
  guessed 1, and looped over their messages: pilot page 1955 -> 437 ms).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 23:05:00
"""

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

DASHBOARD_COLUMNS = [
    "kind", "role", "created_at", "status", "user_id", "team", "conversation_id", "reply_to", "answerer", "model",
    "prompt_version", "input_tokens", "output_tokens", "latency_ms", "ttft_ms",
]


def upgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_kind_role_created_at')
        batch_op.create_index('ix_message_dashboard', DASHBOARD_COLUMNS, unique=False)
        batch_op.create_index(batch_op.f('ix_message_reply_to'), ['reply_to'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE STATISTICS IF NOT EXISTS st_app_user_groups ON ((groups)::text) FROM app_user')
        op.execute('ANALYZE app_user')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP STATISTICS IF EXISTS st_app_user_groups')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_reply_to'))
        batch_op.drop_index('ix_message_dashboard')
        batch_op.create_index('ix_message_kind_role_created_at', ['kind', 'role', 'created_at'], unique=False)
