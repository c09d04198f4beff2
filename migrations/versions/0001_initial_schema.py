"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('list_id', sa.String(length=255), nullable=True),
    sa.Column('date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('from_addr', sa.String(length=512), nullable=False),
    sa.Column('in_reply_to', sa.String(length=998), nullable=True),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message')),
    sa.UniqueConstraint('message_id', name=op.f('uq_message_message_id'))
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_date'), ['date'], unique=False)

    op.create_table('poll_cursor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=2048), nullable=False),
    sa.Column('position', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cycles', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_cursor')),
    sa.UniqueConstraint('name', name=op.f('uq_poll_cursor_name'))
    )
    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=True),
    sa.Column('origin', sa.String(length=2048), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine')),
    sa.UniqueConstraint('digest', name=op.f('uq_quarantine_digest'))
    )
    op.create_table('series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('lineage', sa.String(length=128), nullable=False),
    sa.Column('change_id', sa.String(length=255), nullable=True),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=512), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('missing', sa.JSON(), nullable=False),
    sa.Column('thread_id', sa.String(length=998), nullable=False),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('cover_id', sa.Integer(), nullable=True),
    sa.Column('date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cover_id'], ['message.id'], name=op.f('fk_series_cover_id_message')),
    sa.ForeignKeyConstraint(['previous_id'], ['series.id'], name=op.f('fk_series_previous_id_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_series')),
    sa.UniqueConstraint('message_id', name=op.f('uq_series_message_id'))
    )
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_series_lineage'), ['lineage'], unique=False)
        batch_op.create_index('ix_series_lineage_revision', ['lineage', 'revision'], unique=False)

    op.create_table('draft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('patch_index', sa.Integer(), nullable=False),
    sa.Column('in_reply_to', sa.String(length=998), nullable=False),
    sa.Column('references', sa.JSON(), nullable=False),
    sa.Column('to_addrs', sa.JSON(), nullable=False),
    sa.Column('cc_addrs', sa.JSON(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'approved', 'sent', 'discarded', name='draft_state', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], name=op.f('fk_draft_series_id_series'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft')),
    sa.UniqueConstraint('series_id', 'in_reply_to', name='uq_draft_series_in_reply_to')
    )
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_draft_series_id'), ['series_id'], unique=False)

    op.create_table('finding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('patch_index', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('category', sa.Enum('field-definition', 'reserved-bit', 'host-restore', 'same-value', 'hot-path-load', 'barrier', 'tlb-symmetry', 'polarity', 'pmu-ownership', 'vhe-nvhe', 'init-order', 'el2-access', 'preemption', 'register-width', 'host-flags', 'shadow-vs-live', name='finding_category', native_enum=False, length=32), nullable=False),
    sa.Column('severity', sa.Enum('error', 'warning', 'question', 'info', name='finding_severity', native_enum=False, length=32), nullable=False),
    sa.Column('file', sa.String(length=1024), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('register', sa.String(length=32), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('open', 'resolved-in-series', 'pre-existing', 'dismissed', name='finding_status', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], name=op.f('fk_finding_series_id_series'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_finding')),
    sa.UniqueConstraint('series_id', 'fingerprint', name='uq_finding_series_fingerprint')
    )
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_rule'), ['rule'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_series_id'), ['series_id'], unique=False)

    op.create_table('patch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], name=op.f('fk_patch_message_id_message')),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], name=op.f('fk_patch_series_id_series'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patch')),
    sa.UniqueConstraint('series_id', 'index', name='uq_patch_series_index')
    )
    with op.batch_alter_table('patch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patch_message_id'), ['message_id'], unique=False)

    op.create_table('trailer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patch_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=998), nullable=False),
    sa.Column('author', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['patch_id'], ['patch.id'], name=op.f('fk_trailer_patch_id_patch'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trailer')),
    sa.UniqueConstraint('patch_id', 'message_id', 'name', 'value', name='uq_trailer_patch_message_name_value')
    )
    with op.batch_alter_table('trailer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trailer_patch_id'), ['patch_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trailer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trailer_patch_id'))

    op.drop_table('trailer')
    with op.batch_alter_table('patch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patch_message_id'))

    op.drop_table('patch')
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finding_series_id'))
        batch_op.drop_index(batch_op.f('ix_finding_rule'))

    op.drop_table('finding')
    with op.batch_alter_table('draft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_draft_series_id'))

    op.drop_table('draft')
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.drop_index('ix_series_lineage_revision')
        batch_op.drop_index(batch_op.f('ix_series_lineage'))

    op.drop_table('series')
    op.drop_table('quarantine')
    op.drop_table('poll_cursor')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_date'))

    op.drop_table('message')
