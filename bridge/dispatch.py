"""(topic, bytes) -> one response: the request pipeline of DESIGN §4.

topic -> envelope -> identity -> idempotency -> rate limit -> route -> handler in a
transaction that also records the answer -> publish after commit. Every exception ends here
as a code; nothing escapes to the MQTT loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from bridge import protocol
from bridge.handlers import Request
from bridge.models import ProcessedRequest
from bridge.publisher import Publisher
from bridge.ratelimit import RateLimiter
from bridge.routes import ROUTES, Route
from mchat.errors import BadRequest, MChatError, Unauthenticated, internal_error_reply
from org.selectors import employee_for_connection

logger = logging.getLogger("mchat.bridge")


@dataclass(frozen=True)
class Outcome:
    """What the dispatcher did with one message (for logs, metrics and tests)."""

    reply_topic: str | None
    response: dict | None
    replayed: bool = False


class Dispatcher:
    def __init__(
        self,
        publisher: Publisher,
        *,
        routes: dict[str, Route] | None = None,
        limiter: RateLimiter | None = None,
        max_payload: int | None = None,
    ):
        self.publisher = publisher
        self.routes = ROUTES if routes is None else routes
        self.limiter = limiter or RateLimiter(settings.MCHAT_RATE_LIMITS)
        self.max_payload = max_payload or settings.MCHAT_MAX_PAYLOAD

    def handle(self, topic: str, raw: bytes) -> Outcome:
        """Never raises: the MQTT loop must survive any input."""
        try:
            return self._handle(topic, raw)
        except Exception as exc:  # noqa: BLE001 - last line of defence for the loop
            internal_error_reply(exc, context=f"dispatch of {topic!r}")
            return Outcome(None, None)

    def _handle(self, topic: str, raw: bytes) -> Outcome:
        try:
            parsed = protocol.parse_request_topic(topic)
        except protocol.UnanswerableTopic:
            logger.warning("dropped a message on %r: no client to answer", topic[:300])
            return Outcome(None, None)
        except BadRequest as exc:
            return self._reply(exc.topic, self._error(exc.topic.seq_id, exc))  # type: ignore[attr-defined]

        try:
            envelope = protocol.decode_envelope(raw, seq_id=parsed.seq_id, max_bytes=self.max_payload)
            route = self.routes.get(envelope.action)
            if route is None:
                raise BadRequest(_("未知的 action：%(action)s") % {"action": envelope.action[:64]})
            employee = employee_for_connection(employee_id=parsed.employee_id)
            if employee is None:
                raise Unauthenticated(_("连接未绑定到在职员工"))
        except MChatError as exc:
            return self._reply(parsed, self._error(parsed.seq_id, exc))
        except DatabaseError as exc:
            return self._reply(parsed, self._internal_error(parsed.seq_id, exc, topic))

        stored = self._stored_response(parsed)
        if stored is not None:
            return self._reply(parsed, stored, replayed=True)

        try:
            self.limiter.take(employee_id=employee.employee_id, action_class=route.action_class)
        except MChatError as exc:
            return self._reply(parsed, self._error(parsed.seq_id, exc))

        request = Request(parsed.client_id, parsed.seq_id, route.action, envelope.payload, employee)
        return self._execute(parsed, route, request, topic)

    def _execute(self, parsed: protocol.RequestTopic, route: Route, request: Request, topic: str):
        try:
            with transaction.atomic():
                data = route.handler(request)
                response = protocol.response_payload(
                    parsed.seq_id, 0, "ok", {} if data is None else data
                )
                self._record(parsed, route.action, response)
        except MChatError as exc:
            # A refusal is an answer too: a retry gets the same one and executes nothing.
            response = self._error(parsed.seq_id, exc)
            try:
                with transaction.atomic():
                    self._record(parsed, route.action, response)
            except IntegrityError:
                return self._replay_concurrent(parsed, topic)
            except DatabaseError:
                connection.close_if_unusable_or_obsolete()  # answer anyway, unrecorded
        except IntegrityError as exc:
            # Either a concurrent duplicate recorded first (replay its answer) or a handler bug.
            stored = self._stored_response(parsed)
            if stored is not None:
                return self._reply(parsed, stored, replayed=True)
            response = self._internal_error(parsed.seq_id, exc, topic)
        except Exception as exc:  # noqa: BLE001 - 500, logged, never stored: a retry may succeed
            response = self._internal_error(parsed.seq_id, exc, topic)
        return self._reply(parsed, response)

    def _record(self, parsed: protocol.RequestTopic, action: str, response: dict) -> None:
        ProcessedRequest.objects.create(
            client_id=parsed.client_id, seq_id=parsed.seq_id, action=action, response=response
        )

    def _stored_response(self, parsed: protocol.RequestTopic) -> dict | None:
        return (
            ProcessedRequest.objects.filter(client_id=parsed.client_id, seq_id=parsed.seq_id)
            .values_list("response", flat=True)
            .first()
        )

    def _replay_concurrent(self, parsed: protocol.RequestTopic, topic: str) -> Outcome:
        stored = self._stored_response(parsed)
        if stored is None:
            return self._reply(parsed, self._internal_error(parsed.seq_id, None, topic))
        return self._reply(parsed, stored, replayed=True)

    def _error(self, seq_id: str, exc: MChatError) -> dict:
        return protocol.response_payload(seq_id, exc.code, str(exc.message), exc.data)

    def _internal_error(self, seq_id: str, exc: BaseException | None, topic: str) -> dict:
        if isinstance(exc, DatabaseError):
            # A broken connection must not poison the next request: drop it, reconnect lazily.
            connection.close_if_unusable_or_obsolete()
        message, data = internal_error_reply(
            exc or RuntimeError("answer vanished"), context=f"request on {topic!r}"
        )
        return protocol.response_payload(seq_id, 500, message, data)

    def _reply(self, parsed: protocol.RequestTopic, response: dict, *, replayed=False) -> Outcome:
        self.publisher.publish(parsed.reply_topic, protocol.encode(response), qos=1)
        return Outcome(parsed.reply_topic, response, replayed)
