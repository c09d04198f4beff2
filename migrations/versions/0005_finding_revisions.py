"""finding revisions: a finding's identity within its series and across
revisions, its status against the earlier revision, and trailers carried
over from one.

- finding.key (new, unique per series) takes over from finding.fingerprint
  the role of identifying a finding within its series; finding.fingerprint
  is recomputed as the identity across revisions (without the patch and
  Message-ID). Both are computed here for the rows already stored, with the
  formulas of this revision (bot.data.Finding.key/fingerprint at the time);
  rows stored before this migration did not record the function, so their
  fingerprint is that of a finding outside any function.
- finding.function, revision_status, first_seen, continues_id (the earlier
  revision's finding it continues) and resolved_in_id (the later revision
  that no longer has it).
- trailer.revision: the earlier revision a carried-over trailer was given to.

Revision ID: 0005_finding_revisions
Revises: 0001
Create Date: 2026-12-01
"""
import hashlib
import re
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005_finding_revisions'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_finding = sa.table(
    'finding', sa.column('id', sa.Integer), sa.column('series_id', sa.Integer),
    sa.column('patch_index', sa.Integer), sa.column('rule', sa.String),
    sa.column('file', sa.String), sa.column('register', sa.String),
    sa.column('fields', sa.JSON), sa.column('evidence', sa.Text),
    sa.column('fingerprint', sa.String), sa.column('key', sa.String))
_patch = sa.table('patch', sa.column('series_id', sa.Integer), sa.column('index', sa.Integer),
                  sa.column('message_id', sa.Integer))
_message = sa.table('message', sa.column('id', sa.Integer), sa.column('message_id', sa.String))

_COMMENT = re.compile(r"/\*.*?(\*/|$)|//.*$")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9A-Fa-f]+[uUlL]*|[0-9]+[uUlL]*|\S")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:40]


def _spaced(evidence: str) -> str:
    return "\x1e".join(" ".join(e.split()) for e in evidence.split("\n"))


def _key(row) -> str:
    return _digest(row.rule, str(row.patch_index), row.file or "", row.register or "",
                   ",".join(row.fields or ()), _spaced(row.evidence or ""))


def _fingerprint(row) -> str:
    tokens = [t for line in (row.evidence or "").split("\n")
              for t in _TOKEN.findall(_COMMENT.sub(" ", line))]
    return _digest(row.rule, row.register or "", ",".join(sorted(row.fields or ())), "",
                   " ".join(tokens))


def _old_fingerprint(row, message_id: str) -> str:
    key = "\x1f".join([row.rule, row.file or "", row.register or "",
                       ",".join(row.fields or ()), _spaced(row.evidence or ""), message_id])
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]


def _rows(conn):
    return conn.execute(sa.select(_finding.c.id, _finding.c.series_id, _finding.c.patch_index,
                                  _finding.c.rule, _finding.c.file, _finding.c.register,
                                  _finding.c.fields, _finding.c.evidence)).all()


def upgrade() -> None:
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('function', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('revision_status', sa.Enum('new', 'still-present', name='finding_revision_status', native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column('first_seen', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('continues_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolved_in_id', sa.Integer(), nullable=True))

    conn = op.get_bind()
    for row in _rows(conn):
        conn.execute(_finding.update().where(_finding.c.id == row.id)
                     .values(key=_key(row), fingerprint=_fingerprint(row)))

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint('uq_finding_series_fingerprint', type_='unique')
        batch_op.create_index(batch_op.f('ix_finding_continues_id'), ['continues_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_resolved_in_id'), ['resolved_in_id'], unique=False)
        batch_op.create_unique_constraint('uq_finding_series_key', ['series_id', 'key'])
        batch_op.create_foreign_key(batch_op.f('fk_finding_resolved_in_id_series'), 'series', ['resolved_in_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_finding_continues_id_finding'), 'finding', ['continues_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('trailer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trailer', schema=None) as batch_op:
        batch_op.drop_column('revision')

    # The old fingerprint named the patch by its Message-ID where the key
    # names it by its index: one row per (series, key) is one row per
    # (series, old fingerprint), so the old constraint holds again.
    conn = op.get_bind()
    patch_mids = {(s, i): mid for s, i, mid in conn.execute(
        sa.select(_patch.c.series_id, _patch.c.index, _message.c.message_id)
        .join(_message, _message.c.id == _patch.c.message_id)).all()}
    for row in _rows(conn):
        mid = patch_mids.get((row.series_id, row.patch_index), "")
        conn.execute(_finding.update().where(_finding.c.id == row.id)
                     .values(fingerprint=_old_fingerprint(row, mid)))

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_finding_continues_id_finding'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_finding_resolved_in_id_series'), type_='foreignkey')
        batch_op.drop_constraint('uq_finding_series_key', type_='unique')
        batch_op.drop_index(batch_op.f('ix_finding_resolved_in_id'))
        batch_op.drop_index(batch_op.f('ix_finding_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_finding_continues_id'))
        batch_op.create_unique_constraint('uq_finding_series_fingerprint', ['series_id', 'fingerprint'])
        batch_op.drop_column('resolved_in_id')
        batch_op.drop_column('continues_id')
        batch_op.drop_column('first_seen')
        batch_op.drop_column('revision_status')
        batch_op.drop_column('function')
        batch_op.drop_column('key')
