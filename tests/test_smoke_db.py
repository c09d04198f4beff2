from bot.store import db
from tests.conftest import make_config


def test_upgrade_then_schema_check(db_url, tmp_path):
    cfg = make_config(tmp_path, BOT_DATABASE_URL=db_url)
    engine = db.make_engine(cfg)
    db.upgrade(engine)
    db.check_schema(engine)
    engine.dispose()
