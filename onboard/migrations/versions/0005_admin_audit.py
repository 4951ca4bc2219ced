"""admin audit

``admin_audit``: one row each time an admin opens someone's conversation or
exports answers from the dashboard (issue #17: docs/privacy.md promised a
trace, and the log line was INFO, below what the server prints).

The table is append-only in the database too: triggers refuse ``UPDATE`` and
``DELETE`` (PostgreSQL: and ``TRUNCATE``), so no code path of the app, present
or future, can rewrite or remove the trace. No foreign keys: purging a
conversation or removing a user leaves its audit rows as they were (names and
e-mails are copies taken at the time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 18:15:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString
When = sqlmodel.sql.sqltypes.UTCDateTime

REFUSED = 'admin_audit is append-only: its rows cannot be changed or deleted'


def upgrade() -> None:
    op.create_table('admin_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', When(), nullable=False),
    sa.Column('action', String(length=32), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('admin_subject', String(length=255), nullable=False),
    sa.Column('admin_email', String(length=320), nullable=False),
    sa.Column('admin_name', String(length=255), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('owner_subject', String(length=255), nullable=False),
    sa.Column('owner_email', String(length=320), nullable=False),
    sa.Column('owner_name', String(length=255), nullable=False),
    sa.Column('conversation_id', String(length=32), nullable=True),
    sa.Column('count', sa.Integer(), nullable=True),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('admin_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_audit_at'), ['at'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"""
            CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{REFUSED}';
            END $$
        """)
        op.execute('CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit '
                   'FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only()')
        op.execute('CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit '
                   'FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only()')
    else:
        for event in ('UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER admin_audit_no_{event.lower()} BEFORE {event} ON admin_audit "
                       f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS admin_audit_no_truncate ON admin_audit')
        op.execute('DROP TRIGGER IF EXISTS admin_audit_append_only ON admin_audit')
        op.execute('DROP FUNCTION IF EXISTS admin_audit_append_only()')
    else:
        op.execute('DROP TRIGGER IF EXISTS admin_audit_no_update')
        op.execute('DROP TRIGGER IF EXISTS admin_audit_no_delete')
    with op.batch_alter_table('admin_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_audit_at'))
    op.drop_table('admin_audit')
