"""`bot serve`: the dashboard under waitress, a production WSGI server."""

from __future__ import annotations

import logging

from bot.config import Config
from bot.errors import ConfigError
from bot.store.db import Database
from bot.web.app import create_app

logger = logging.getLogger(__name__)


def run_serve(cfg: Config, *, host: str | None = None, port: int | None = None,
              threads: int = 4) -> int:
    from waitress import create_server

    host = host or cfg.web.listen
    port = cfg.web.port if port is None else port
    if not 0 < port < 65536:
        raise ConfigError("--port %d: not a TCP port" % port)
    database = Database(cfg)
    try:
        app = create_app(cfg, database)
        try:
            server = create_server(app, host=host, port=port, threads=threads,
                                   ident="kvm-review-bot")
        except OSError as exc:
            raise ConfigError("cannot listen on %s:%d: %s" % (host, port,
                                                             exc.strerror or exc)) from None
        # Said once the socket listens, so that whoever reads it can connect.
        url = "http://%s:%d/" % ("[%s]" % host if ":" in host else host, port)
        print("dashboard at %s" % url, flush=True)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        database.close()
    return 0
