"""poll integrity: the messages whose whole thread the poller stored

Revision ID: 0006_poll_integrity
Revises: 0005_finding_revisions
Create Date: 2026-12-01
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006_poll_integrity'
down_revision: Union[str, Sequence[str], None] = '0005_finding_revisions'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('poll_seen',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('thread_id', sa.String(length=998), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_poll_seen')),
    sa.UniqueConstraint('message_id', name=op.f('uq_poll_seen_message_id'))
    )


def downgrade() -> None:
    op.drop_table('poll_seen')
