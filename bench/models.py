"""The table of the REST baseline (item 6): what a site might store a chat message in without the app.

Installed only by ``bench.settings``; created with ``migrate --run-syncdb`` (the bench ships no migrations).
"""

from django.db import models


class BaselineMessage(models.Model):
    """A chat message row with the columns the app's Message has for a user message."""

    session = models.ForeignKey("chatmodel_app.Session", on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16)
    content = models.TextField(blank=True)
    name = models.CharField(max_length=128, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.session_id} {self.role}"
