"""draft workflow: states draft -> approved -> sending -> sent | failed, or
discarded; the history of every draft (draft_event); approval, supersession,
export and outbox columns on draft. Existing 'pending' drafts become 'draft'.

Revision ID: 0008_draft_workflow
Revises: 0007_series_base
Create Date: 2026-12-01
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008_draft_workflow'
down_revision: Union[str, Sequence[str], None] = '0007_series_base'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('draft_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('draft_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=512), nullable=False),
    sa.Column('action', sa.Enum('created', 'edited', 'approved', 'discarded', 'superseded', 'exported', 'claimed', 'sent', 'failed', 'released', 'recovered', name='draft_action', native_enum=False, length=32), nullable=False),
    sa.Column('state_before', sa.Enum('draft', 'approved', 'sending', 'sent', 'failed', 'discarded', name='draft_state', native_enum=False, length=32), nullable=True),
    sa.Column('state_after', sa.Enum('draft', 'approved', 'sending', 'sent', 'failed', 'discarded', name='draft_state', native_enum=False, length=32), nullable=True),
    sa.Column('body_before', sa.Text(), nullable=True),
    sa.Column('body_after', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['draft.id'], name=op.f('fk_draft_event_draft_id_draft'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft_event'))
    )
    with op.batch_alter_table('draft_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_draft_event_draft_id'), ['draft_id'], unique=False)

    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fingerprints', sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('approved_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('from_addr', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('reply_message_id', sa.String(length=998), nullable=True))
        batch_op.add_column(sa.Column('superseded_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('exported_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handing_over_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False,
                                      server_default=sa.text('0')))
        batch_op.add_column(sa.Column('smtp_reply', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('version', sa.Integer(), nullable=False,
                                      server_default=sa.text('1')))
        batch_op.create_index(batch_op.f('ix_draft_state'), ['state'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_draft_reply_message_id'), ['reply_message_id'])
        batch_op.create_foreign_key(batch_op.f('fk_draft_superseded_by_id_series'), 'series', ['superseded_by_id'], ['id'], ondelete='SET NULL')

    op.execute("UPDATE draft SET state = 'draft' WHERE state = 'pending'")



def downgrade() -> None:
    op.execute("UPDATE draft SET state = 'pending' WHERE state = 'draft'")
    op.execute("UPDATE draft SET state = 'approved' WHERE state IN ('sending', 'failed')")
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_draft_superseded_by_id_series'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_draft_reply_message_id'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_draft_state'))
        batch_op.drop_column('version')
        batch_op.drop_column('last_error')
        batch_op.drop_column('smtp_reply')
        batch_op.drop_column('attempts')
        batch_op.drop_column('handing_over_at')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('exported_at')
        batch_op.drop_column('superseded_at')
        batch_op.drop_column('superseded_by_id')
        batch_op.drop_column('reply_message_id')
        batch_op.drop_column('from_addr')
        batch_op.drop_column('approved_digest')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('fingerprints')

    with op.batch_alter_table('draft_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_draft_event_draft_id'))

    op.drop_table('draft_event')
