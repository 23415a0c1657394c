"""The AI SDK UI message stream door: what Vercel AI SDK's ``useChat`` (``DefaultChatTransport``) speaks.

A thin front over ``chatmodel_app.services``, like the REST API, whose authentication, permissions,
throttle, ownership and errors it shares (``chatmodel_app.api.base``):

- ``chats``: a chat id -> its session; the client's ``UIMessage`` list -> the messages that are new;
  stored messages -> ``UIMessage`` objects.
- ``wire``: run events -> UI message stream parts (Server-Sent Events, ``x-vercel-ai-ui-message-stream: v1``).
- ``views`` / ``urls``: ``POST <name>/chat``, ``GET|DELETE <name>/chat/<id>/stream``, ``GET <name>/chat/<id>/messages``;
  the host mounts them (the example project under ``api/ai-sdk/``). docs/ai-sdk.md is the user's page.
"""
