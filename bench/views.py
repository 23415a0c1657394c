"""The REST baseline (item 6): a plain DRF ``CreateAPIView`` storing one message, as a site might write it by hand."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import generics, serializers

from chatmodel_app.models import Session

from .models import BaselineMessage


class BaselineMessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = BaselineMessage
        fields = ["id", "role", "content", "name", "created_at"]


class BaselineMessageCreateView(generics.CreateAPIView):
    """``POST /bench/sessions/<uuid>/messages/``: the user's own session, one message, 201 with the row."""

    serializer_class = BaselineMessageSerializer

    def perform_create(self, serializer: Any) -> None:
        # The same ownership rule a hand-written view would need: only the user's own session.
        session = get_object_or_404(Session, uuid=self.kwargs["session_uuid"], user=self.request.user)
        serializer.save(session=session)
