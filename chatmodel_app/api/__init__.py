"""The REST API: DRF views over ``services.py``, Server-Sent Events for streamed runs, an OpenAPI schema.

The host includes ``chatmodel_app.urls``; see ``docs/rest.md`` for the endpoints and the status codes.
"""
