"""daemon_status: the poller's health, one row read by `bot status` and the dashboard

Revision ID: 0009_daemon_status
Revises: 0008_draft_workflow
Create Date: 2026-12-01
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009_daemon_status'
down_revision: Union[str, Sequence[str], None] = '0008_draft_workflow'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('daemon_status',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('command', sa.String(length=32), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_result', sa.Enum('running', 'ok', 'failed', 'stopped', name='poll_result', native_enum=False, length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('messages_stored', sa.Integer(), nullable=False),
    sa.Column('series_stored', sa.Integer(), nullable=False),
    sa.Column('messages_total', sa.BigInteger(), nullable=False),
    sa.Column('series_total', sa.BigInteger(), nullable=False),
    sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daemon_status'))
    )


def downgrade() -> None:
    op.drop_table('daemon_status')
