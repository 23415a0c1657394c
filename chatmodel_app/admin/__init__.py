"""The admin as a prompt-engineering workspace: versions, publishing, diffs, a playground, sessions and runs.

Every write goes through ``services`` and every read through ``selectors`` (the admin only translates
requests and errors); pages that could grow without bound (a chat model's versions, a session's
messages) show a bounded slice with links to the rest, so each renders in a fixed number of queries.
"""

from django.contrib import admin

from ..models import ChatModel, Run, Session, Version
from .chat_models import ChatModelAdmin
from .runs import RunAdmin
from .sessions import SessionAdmin
from .versions import VersionAdmin

admin.site.register(ChatModel, ChatModelAdmin)
admin.site.register(Version, VersionAdmin)
admin.site.register(Session, SessionAdmin)
admin.site.register(Run, RunAdmin)

__all__ = ["ChatModelAdmin", "RunAdmin", "SessionAdmin", "VersionAdmin"]
