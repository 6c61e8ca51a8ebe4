"""The counter page (``verifier serve``): a local web page for staff at a counter.

Staff pick the service, then scan with the computer's camera, upload a picture, or
type/paste the code (a USB scanner that types counts as typing). The answer is a large
green ACCEPTED or red REFUSED with the reason in English and Chinese, the holder's
disclosed data, the entitlement asked for, and the portrait when the cache holds it.
Every asset is served by this app; nothing is fetched from elsewhere.

The page decodes nothing itself: camera frames go to ``POST /api/decode`` (zxing-cpp on
the server), and a newly seen code goes to ``POST /api/check``, which verifies through
the same :class:`verifier.checkpoint.Checkpoint` as ``verifier check`` (same cache, same
SQLite replay store). Holding a code in front of the camera does not burn it: the page
checks each distinct code once.

Example::

    from verifier.web import create_app
    app = create_app(Checkpoint(VerifierCache(path)))
    uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from verifier.web._app import create_app

__all__ = ["create_app"]
