"""dashboard, triage and tickets

- ``app_user.team`` and, on ``message``, the owner (``user_id``), the owner's
  ``team`` and the conversation ``kind``: the dashboard aggregates messages
  without joining conversations and users; existing rows are filled from
  their conversation.
- ``ix_message_kind_role_created_at``: the dashboard's queries all read
  answers (or questions) of one kind in a date range.
- ``triage`` (status, owner, note of a thumbs down or a problem report) with
  its history in ``triage_event``; ``ticket`` (reported problems).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

String = sqlmodel.sql.sqltypes.AutoString
When = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team', String(length=128), nullable=False, server_default='unassigned'))

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('team', String(length=128), nullable=False, server_default='unassigned'))
        batch_op.add_column(sa.Column('kind', String(length=16), nullable=False, server_default='assistant'))
        batch_op.create_foreign_key('fk_message_user_id_app_user', 'app_user', ['user_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_message_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_message_kind_role_created_at', ['kind', 'role', 'created_at'], unique=False)

    op.execute(
        "UPDATE message SET "
        "user_id = (SELECT conversation.user_id FROM conversation WHERE conversation.id = message.conversation_id), "
        "kind = (SELECT conversation.kind FROM conversation WHERE conversation.id = message.conversation_id)"
    )

    op.create_table('triage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject', String(length=16), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('status', String(length=16), nullable=False),
    sa.Column('owner', String(length=255), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('updated_at', When(), nullable=False),
    sa.Column('updated_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by'], ['app_user.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject', 'subject_id', name='uq_triage_subject_subject_id')
    )
    with op.batch_alter_table('triage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_triage_status'), ['status'], unique=False)

    op.create_table('triage_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('triage_id', sa.Integer(), nullable=False),
    sa.Column('at', When(), nullable=False),
    sa.Column('by', sa.Integer(), nullable=True),
    sa.Column('old_status', String(length=16), nullable=True),
    sa.Column('status', String(length=16), nullable=False),
    sa.Column('owner', String(length=255), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['by'], ['app_user.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['triage_id'], ['triage.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('triage_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_triage_event_triage_id'), ['triage_id'], unique=False)

    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('page', String(length=64), nullable=False),
    sa.Column('conversation_id', String(length=32), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', When(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_table('ticket')
    op.drop_table('triage_event')
    op.drop_table('triage')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_kind_role_created_at')
        batch_op.drop_index(batch_op.f('ix_message_user_id'))
        batch_op.drop_constraint('fk_message_user_id_app_user', type_='foreignkey')
        batch_op.drop_column('kind')
        batch_op.drop_column('team')
        batch_op.drop_column('user_id')
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('team')
