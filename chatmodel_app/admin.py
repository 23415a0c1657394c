from django.contrib import admin

from .models import ChatModel, Message, Run, Session, Version


class VersionInline(admin.TabularInline):
    model = Version
    fields = ("number", "model", "is_published", "ratio", "created_by", "memo", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "updated_at")
    search_fields = ("name",)
    inlines = [VersionInline]


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = ("chat_model", "number", "model", "is_published", "ratio", "created_at")
    list_filter = ("is_published", "chat_model")
    list_select_related = ("chat_model",)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("uuid", "chat_model", "version", "user", "created_at")
    list_select_related = ("chat_model", "version", "user")
    search_fields = ("uuid",)
    raw_id_fields = ("version", "user")


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("uuid", "status", "model", "latency_ms", "prompt_tokens", "completion_tokens", "cost", "error")
    list_filter = ("status",)
    raw_id_fields = ("session", "version")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("session", "seq", "role", "content")
    raw_id_fields = ("session", "run")
