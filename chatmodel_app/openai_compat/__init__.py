"""The OpenAI-compatible door: Conversations, Responses, Chat Completions and Models over ``services``.

Mount it where OpenAI's SDKs expect ``/v1``: ``path("v1/", include("chatmodel_app.openai_compat.urls"))``.
Each module translates one part of OpenAI's API; nothing here decides what a run does (``services`` does):

- ``auth``: ``Authorization: Bearer <DRF token>``;
- ``errors``: the app's errors in OpenAI's error body (``{"error": {"message", "type", "param", "code"}}``);
- ``ids``: public ids (``conv_``, ``resp_``, ``msg_``...) to sessions, runs and messages, and back;
- ``items``: stored messages as OpenAI items, and OpenAI input (items, chat messages) as messages to store;
- ``objects``: the Response, Conversation and Model objects;
- ``streams``: run events as Responses SSE events or ``chat.completion.chunk`` frames;
- ``views``: the thin views; ``urls``: their routes. docs/openai.md documents the mapping decisions.
"""
