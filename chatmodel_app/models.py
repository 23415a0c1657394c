"""Chat models, their prompt versions, sessions, messages and runs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ChatModel(models.Model):
    """A named chat model: the key application code types, e.g. ``ChatModel("simple_assistant")``."""

    name = models.SlugField(max_length=100, unique=True, help_text="The name application code uses.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "chat model"

    def __str__(self) -> str:
        return self.name


class Version(models.Model):
    """One version of a chat model's system prompt and model settings."""

    class DoubleTexting(models.TextChoices):
        REJECT = "reject", "reject: refuse new messages while a run is active"
        ENQUEUE = "enqueue", "enqueue: store them and run after the active run"
        INTERRUPT = "interrupt", "interrupt: cancel the active run (keeping its partial reply), then run"
        ROLLBACK = "rollback", "rollback: cancel the active run and discard its partial reply, then run"

    class Truncation(models.TextChoices):
        AUTO = "auto", "auto: newest messages that fit"
        LAST_MESSAGES = "last_messages", "last N messages"
        SUMMARY = "summary", "summary of dropped history"

    chat_model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    system_prompt = models.TextField(blank=True)
    model = models.CharField(max_length=200, help_text="A LiteLLM model string, e.g. 'gpt-4o-mini' or 'offline/demo'.")
    params = models.JSONField(
        default=dict, blank=True, help_text="Sampling parameters: temperature, max_tokens, top_p, ..."
    )
    tools = models.JSONField(default=list, blank=True, help_text="Function/tool JSON schemas offered on every run.")
    memo = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    is_published = models.BooleanField(default=False)
    ratio = models.FloatField(default=1.0, help_text="A/B weight among published versions.")
    # How history is fitted into the context window (see context.py).
    truncation = models.CharField(max_length=20, choices=Truncation.choices, default=Truncation.AUTO)
    # What messages sent while a run is active do: this policy, unless a request picks one of the allowed others.
    double_texting = models.CharField(max_length=20, choices=DoubleTexting.choices, default=DoubleTexting.REJECT)
    double_texting_allowed = models.JSONField(
        default=list, blank=True, help_text='Other double-texting policies a request may choose, e.g. ["enqueue"].'
    )
    truncation_last_messages = models.PositiveIntegerField(null=True, blank=True, help_text="N for last_messages.")
    context_window = models.PositiveIntegerField(
        null=True, blank=True, help_text="Max input tokens, overriding what LiteLLM knows of the model."
    )
    summary_model = models.CharField(
        max_length=200, blank=True, help_text="Model that writes summaries (default: this version's)."
    )
    fallbacks = models.JSONField(
        default=list, blank=True, help_text="Model strings tried in order when the model fails."
    )
    # Prompt variables (docs/prompts.md): [{"name", "default", "required", "description"}], each {{ name }} in
    # system_prompt replaced with the session's value (context/prompt.py); checked by validation/variables.py.
    variables = models.JSONField(
        default=list, blank=True, help_text="Variables the system prompt uses as {{ name }}: name, default, required."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chatmodel_versions",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["chat_model", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["chat_model", "number"], name="chatmodel_version_number_uniq"),
            models.CheckConstraint(condition=Q(ratio__gte=0), name="chatmodel_version_ratio_gte_0"),
        ]
        indexes = [
            models.Index(fields=["chat_model", "is_published"], name="chatmodel_version_pub_idx"),
        ]
        permissions = [("publish_version", "Can publish and unpublish versions")]

    def __str__(self) -> str:
        return f"{self.chat_model.name} v{self.number}"


class Session(models.Model):
    """A conversation with one chat model, pinned to the version it started on."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chat_model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="sessions")
    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="sessions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="chatmodel_sessions",
    )
    metadata = models.JSONField(default=dict, blank=True)
    is_playground = models.BooleanField(default=False, help_text="Started from the admin playground.")
    # The next seq to hand out: appending is one conditional UPDATE, never a scan.
    next_seq = models.PositiveIntegerField(default=1, editable=False)
    # The active-run claim: set by a conditional UPDATE, so it holds across processes;
    # a worker that dies frees the session when the lease runs out.
    active_run_uuid = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The newest seq a failed run was given: re-adding those messages is the seed's retry, not new turns.
    failed_run_seq = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Rolling summary of history dropped from the context window (truncation "summary").
    summary = models.TextField(blank=True)
    summary_until_seq = models.PositiveIntegerField(null=True, blank=True)
    # Messages enqueued while a run was active (double-texting "enqueue"), run in order after it.
    queued = models.JSONField(default=list, blank=True, editable=False)
    # The values of the version's prompt variables, set (defaults filled in) when the session was created.
    variables = models.JSONField(default=dict, blank=True, editable=False)
    # Branches (services/branches.py): the branch the conversation is on now, and every branch's parent and
    # fork point ({"id", "parent", "cut", "at"}); [] for a single-branch history (branch 0). See docs/branches.md.
    branch = models.PositiveIntegerField(default=0, editable=False)
    branches = models.JSONField(default=list, blank=True, editable=False)
    # Named conversations (services/conversations.py): a title the user set, or one generated after the first
    # exchange; archived sessions leave the default list; last_activity_at orders it (set by the UPDATEs that
    # add messages, so it costs no query of its own).
    title = models.CharField(max_length=200, blank=True)
    title_source = models.CharField(
        max_length=10,
        blank=True,
        choices=[("user", "set by the user"), ("auto", "generated"), ("pending", "being generated")],
        help_text="Who set the title: a title the user set is never replaced by a generated one.",
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["chat_model", "-created_at"], name="chatmodel_session_cm_idx"),
            models.Index(fields=["user", "-created_at"], name="chatmodel_session_user_idx"),
            models.Index(fields=["user", "-last_activity_at"], name="chatmodel_session_activity_idx"),
        ]

    def __str__(self) -> str:
        return str(self.uuid)


class Run(models.Model):
    """One call of the model on a session, whatever its outcome."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        INCOMPLETE = "incomplete", "incomplete"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IN_PROGRESS)
    model = models.CharField(max_length=200)
    stream = models.BooleanField(default=False)
    params = models.JSONField(default=dict, blank=True, help_text="Sampling parameters sent to the model.")
    finish_reason = models.CharField(max_length=40, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    estimated_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True, help_text="USD, where LiteLLM knows the price.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    # Which stored messages were sent: the window is contiguous, so its ends and size say it.
    first_seq = models.PositiveIntegerField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=40, blank=True, help_text="Error code, e.g. rate_limit, timeout.")
    error_log = models.TextField(blank=True)
    partial_content = models.TextField(blank=True, help_text="Text generated before a stream was cut or failed.")
    # The run event seq that partial_content is complete up to (saved with it while the run streams).
    partial_seq = models.PositiveIntegerField(null=True, blank=True, editable=False)
    cancel_requested = models.BooleanField(default=False)
    # Cancelled by double-texting "rollback": its partial reply is kept on the run, not stored as a message.
    rollback_requested = models.BooleanField(default=False)
    # The channel-layer channel of the worker process running it: rejoin and cancel requests go there.
    worker_channel = models.CharField(max_length=200, blank=True, editable=False)
    used_summary = models.BooleanField(default=False)
    attempts = models.JSONField(default=list, blank=True, help_text="Failed attempts before the answer (fallbacks).")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session", "-created_at"], name="chatmodel_run_session_idx"),
            models.Index(fields=["status", "-created_at"], name="chatmodel_run_status_idx"),
            models.Index(fields=["version", "-created_at"], name="chatmodel_run_version_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.uuid} ({self.status})"


class Message(models.Model):
    """One message of a session, in ``seq`` order."""

    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        FUNCTION = "function"
        TOOL = "tool"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    # None (not "") for an assistant turn that is only a tool call, as providers expect.
    content = models.TextField(null=True, blank=True)  # noqa: DJ001
    name = models.CharField(max_length=128, blank=True)
    function_call = models.JSONField(null=True, blank=True)
    tool_calls = models.JSONField(null=True, blank=True)
    tool_call_id = models.CharField(max_length=128, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    # The branch it belongs to (0: the first); the current path is a chain of branches (services/branches.py).
    branch = models.PositiveIntegerField(default=0, editable=False)
    # The client's Idempotency-Key of the add_messages call that stored it: a retried call finds them.
    idempotency_key = models.CharField(max_length=128, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            # Also the index every history read walks, newest first.
            models.UniqueConstraint(fields=["session", "seq"], name="chatmodel_message_seq_uniq"),
        ]
        indexes = [
            models.Index(
                fields=["session", "idempotency_key"],
                name="chatmodel_message_idem_idx",
                condition=~Q(idempotency_key=""),
            ),
            # A path read is a range of seq per branch of the chain (context/paths.py).
            models.Index(fields=["session", "branch", "seq"], name="chatmodel_message_branch_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"


class PublishRecord(models.Model):
    """One publish or unpublish of a version under a label: who, when, and the A/B ratio it got."""

    class Action(models.TextChoices):
        PUBLISH = "publish"
        UNPUBLISH = "unpublish"

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="publish_records")
    action = models.CharField(max_length=10, choices=Action.choices)
    ratio = models.FloatField(null=True, blank=True)
    # The label moved ("production": what "deploy" serves, Version.is_published); see services/labels.py.
    label = models.CharField(max_length=50, default="production")
    # The label's whole set just before the move ({"<number>": ratio}): what a rollback restores. Null: not known.
    previous = models.JSONField(null=True, blank=True)
    rollback = models.BooleanField(default=False, help_text="Made by a rollback to the label's previous set.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="chatmodel_publishes"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["version", "-created_at"], name="chatmodel_publish_version_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.version} at {self.created_at:%Y-%m-%d %H:%M}"


class Label(models.Model):
    """A named set of a chat model's versions with A/B ratios, e.g. ``staging``: ``ChatModel(name, version="staging")``.

    The built-in label ``production`` (what "deploy" means) is the versions' ``is_published`` and ``ratio``;
    every other label is a row here. Moves and rollbacks go through ``services.labels``.
    """

    chat_model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=50)
    # Version number (as text: JSON keys are strings) -> A/B weight, e.g. {"3": 1.0}.
    ratios = models.JSONField(default=dict, blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="chatmodel_labels"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chat_model", "name"]
        constraints = [models.UniqueConstraint(fields=["chat_model", "name"], name="chatmodel_label_name_uniq")]

    def __str__(self) -> str:
        return f"{self.chat_model.name}@{self.name}"


class Feedback(models.Model):
    """A thumbs up/down, with an optional comment, on an assistant message (one per message, by its session's user)."""

    class Rating(models.IntegerChoices):
        UP = 1, "up"
        DOWN = -1, "down"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    # Denormalised from the message's session, so the admin counts a version's feedback with one indexed query.
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="chatmodel_feedback"
    )
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "feedback"
        constraints = [
            models.CheckConstraint(condition=Q(rating__in=[1, -1]), name="chatmodel_feedback_rating_valid"),
        ]
        indexes = [models.Index(fields=["version", "-updated_at"], name="chatmodel_feedback_version_idx")]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on {self.message}"
