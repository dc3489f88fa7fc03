"""The paho implementation of the publishing port (mchat.outbox).

The bridge installs its own loop's publisher at start-up (bridge.client); any other server
process (web admin, Celery workers) gets `server_publisher`, named by the setting
MCHAT_PUBLISHER: a lazily connected client with the bridge's credential.
"""

from __future__ import annotations


class PahoPublisher:
    def __init__(self, client) -> None:
        self._client = client

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)


def server_publisher() -> PahoPublisher:
    from bridge.client import server_publisher_client

    return PahoPublisher(server_publisher_client())
