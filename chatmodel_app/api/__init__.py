"""The REST API: DRF views over ``services.py``, Server-Sent Events for streamed runs, an OpenAPI schema.

The host includes ``chatmodel_app.urls``; see the README's REST API section for the endpoints and the status codes.
"""
