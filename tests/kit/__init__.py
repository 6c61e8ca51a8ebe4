"""The one test kit: what every test folder needs and nothing domain-specific.

- :mod:`kit.clock` -- ``Clock`` (fixed, moved by hand) and ``RealClock`` (the wall clock)
- :mod:`kit.net` -- ``free_port`` and ``serving`` (an ASGI app under uvicorn in a thread)
- :mod:`kit.postgres` -- throwaway databases on the machine's PostgreSQL
- :mod:`kit.processes` -- the project's console scripts and ``cardsvc serve`` as real
  processes (``CardsvcServer``), always through this interpreter's environment

The folder kits (``cardsvc_kit``, ``payments_kit``, ``console_kit``, ``e2e_kit``,
``fault_kit``, ``wallet_testkit``) build their actors on these and never copy them.

Example::

    from kit.processes import CardsvcServer, clean_env

    server = CardsvcServer(data_dir, clean_env(CARDSVC_KEY_PASSPHRASE="x")).start()
    ...
    server.stop()
"""
