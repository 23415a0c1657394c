"""``Authorization: Bearer <token>``: the DRF token, sent the way OpenAI's SDKs send an API key."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """DRF's token authentication with OpenAI's keyword: ``OpenAI(api_key=<DRF token>)`` just works."""

    keyword = "Bearer"
