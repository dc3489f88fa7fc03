"""MChat Python SDK: a client for people and AI agents, speaking the MChat MQTT contract.

    from mchat_sdk import Client, Agent

See mchat_sdk/README.md. Needs only paho-mqtt (no Django).
"""

from mchat_sdk.agent import Agent, AsyncReplyStream, Incoming, ReplyStream, StreamCanceled
from mchat_sdk.client import Client, ConnectionInfo
from mchat_sdk.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    MChatError,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
    Timeout,
    Unauthenticated,
)
from mchat_sdk.events import Conversation, Event, Message

__all__ = [
    "Agent",
    "AsyncReplyStream",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "ConnectionInfo",
    "Conversation",
    "Event",
    "Forbidden",
    "Incoming",
    "MChatError",
    "Message",
    "NotFound",
    "RateLimited",
    "ReplyStream",
    "RequestTimeout",
    "ServerError",
    "StreamCanceled",
    "Timeout",
    "Unauthenticated",
]
