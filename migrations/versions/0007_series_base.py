"""series base: the commit or kernel version a series was checked against

Revision ID: 0007_series_base
Revises: 0006_poll_integrity
Create Date: 2026-11-27
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007_series_base'
down_revision: Union[str, Sequence[str], None] = '0006_poll_integrity'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_source', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('base_commit', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('base_version', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('base_detail', sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), never a copy of the table:
    # dropping the old `series` would cascade to every finding and patch.
    with op.batch_alter_table('series', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('base_detail')
        batch_op.drop_column('base_version')
        batch_op.drop_column('base_commit')
        batch_op.drop_column('base_source')
