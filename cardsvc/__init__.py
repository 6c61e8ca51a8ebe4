"""The issuing authority: HTTP API, domain services, database and the ``cardsvc`` CLI.

Nothing outside this package imports it. Services (``cardsvc.services``) are plain
functions over a SQLAlchemy session; the API (``cardsvc.api.create_app``) stays at the edge.

Example::

    from cardsvc.api import create_app
    from cardsvc.settings import get_settings
    app = create_app(get_settings(data_dir=Path("data")))
"""
