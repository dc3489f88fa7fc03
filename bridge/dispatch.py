"""(topic, bytes) -> one response: the request pipeline of DESIGN §4.

topic -> envelope -> identity -> idempotency -> rate limit -> route -> handler in a
transaction that also records the answer -> publish after commit. Every exception ends here
as a code; nothing escapes to the MQTT loop.

Requests that arrive together are served together: one statement finds their employees (and
those their payloads name, BatchExecutor.payload_employees) and their earlier answers, and their
handlers run in one transaction (or several: one per run that may take row locks, see
_transactions). Consecutive requests of an
action whose route has a BatchExecutor (msg.send_private) are served by its serve_many in a fixed number of
statements, refusals included; any other request runs inside its own savepoint so a refusal
or an error undoes only that request. One commit then covers the
transaction's requests, and responses and deliveries go out after it. If the batch cannot commit, each request
is served again on its own, so a bad neighbour never costs the others their answer.

A batch that is one run of a route whose executor has serve_known (msg.send_private between pairs
this process has served before; a lone msg.send_group from a member this process has served
in that group before) goes to it first, before anyone is looked up: one statement stores the
batch and checks everything the handler assumed; if anything no longer holds, nothing is
stored and the batch takes the path above (_serve_optimistically).

A batch that is one run of a route whose executor commits itself (msg.send_private, the
bulk of the traffic) gets no transaction here: its handler's one write statement is atomic, and
a message is its own idempotency record, so the batch costs neither BEGIN, COMMIT nor an INSERT
of answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.utils.translation import gettext as _

from audit.context import source as audit_source
from bridge import protocol
from bridge.deferred import Deferred
from bridge.handlers import Request
from bridge.models import ProcessedRequest
from bridge.ratelimit import RateLimiter, limiter_from_settings
from bridge.routes import ROUTES, Route
from mchat import wire
from mchat.db import model_columns, model_from_row, rows_insert, rows_source, value_in
from mchat.errors import BadRequest, MChatError, Unauthenticated, internal_error_reply
from mchat.outbox import Publisher
from messaging.agent_waits import agent_ack_answers
from org.models import Employee

logger = logging.getLogger("mchat.bridge")


def _payload_employee_ids(work: _Work) -> set[str]:
    """The employee ids that the work's payload names in its route's payload_employees fields
    (only what could be one: anything else is the handler's to refuse)."""
    fields = work.route.batch.payload_employees if work.route.batch is not None else ()
    values = (work.payload.get(name) for name in fields)
    return {v for v in values if isinstance(v, str) and wire.EMPLOYEE_ID_RE.match(v)}


def _with_resolved_waits(recorded: dict[tuple[str, str], dict | None]) -> dict[tuple[str, str], dict | None]:
    """Recorded answers, where a pending one (its answer waits for an AI agent) takes the
    answer its wait has been resolved with since: messaging owns the wait and its answer."""
    pending = [key for key, answer in recorded.items() if answer is None]
    if pending:
        recorded.update(agent_ack_answers(pending))
    return recorded


def _runs(works: list[_Work]) -> list[list[_Work]]:
    """The batch in arrival order, cut into runs: consecutive requests of one action that has a
    BatchExecutor form one run; any other request is a run of its own. Running them in this
    order keeps every client's requests in the order it sent them."""
    runs: list[list[_Work]] = []
    for work in works:
        if runs and work.route.serves_many and runs[-1][0].route is work.route:
            runs[-1].append(work)
        else:
            runs.append([work])
    return runs


def _transactions(runs: list[list[_Work]]) -> list[list[list[_Work]]]:
    """The runs cut into transactions, in order, so that no transaction holds the row locks of
    two runs: a run of a route that may take row locks (any action class but "read") shares
    its transaction only with "read" runs. Each run takes its locks in the one global order
    (docs/architecture.md, "Row locks"); two runs in one transaction would take theirs one
    after the other, out of that order, and two bridges could then wait for each other."""
    transactions: list[list[list[_Work]]] = []
    locking = False
    for run in runs:
        takes_locks = run[0].route.action_class != "read"
        if not transactions or (takes_locks and locking):
            transactions.append([])
            locking = False
        transactions[-1].append(run)
        locking = locking or takes_locks
    return transactions


@dataclass(frozen=True)
class Outcome:
    """What the dispatcher did with one message (for logs, metrics and tests)."""

    reply_topic: str | None
    response: dict | None
    replayed: bool = False
    action: str | None = None  # the route's action; None when the request named no known one


@dataclass(eq=False)  # by identity: works are keys while they are identified
class _Work:
    """One message on its way through the pipeline."""

    topic: str
    raw: bytes
    parsed: protocol.RequestTopic | None = None
    route: Route | None = None
    payload: dict | None = None
    employee: Employee | None = None
    employees: dict[str, Employee | None] = field(default_factory=dict)  # see Request.employees
    response: dict | None = None
    decided: bool = False  # response is final (None: nothing to publish)
    replayed: bool = False
    lost_race: bool = False  # another process recorded this request first
    same_as: _Work | None = None  # an earlier copy of this request in the same batch
    limited: bool = False  # its rate-limit token is spent already

    @property
    def key(self) -> tuple[str, str]:
        return (self.parsed.client_id, self.parsed.seq_id)

    def decide(self, response: dict | None, *, replayed: bool = False) -> None:
        self.response, self.decided, self.replayed = response, True, replayed


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
        self.limiter = limiter or limiter_from_settings()
        self.max_payload = max_payload or settings.MCHAT_MAX_PAYLOAD
        self._database_down = False  # within one batch: the database refused a request

    def handle(self, topic: str, raw: bytes) -> Outcome:
        return self.handle_batch([(topic, raw)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Outcome]:
        """Answer every message; never raises (the MQTT loop must survive any input)."""
        works = [_Work(topic, raw) for topic, raw in messages]
        try:
            self._decode(works)
            if not self._serve_optimistically(works):
                self._identify_and_replay(works)
                self._limit(works)
                self._execute(works)
        except Exception as exc:
            for work in works:
                if not work.decided and work.parsed is not None:
                    work.decide(self._internal_error(work, exc))
        return [self._publish(work) for work in works]

    # --- stages -------------------------------------------------------------------------------

    def _decode(self, works: list[_Work]) -> None:
        for work in works:
            try:
                work.parsed = protocol.parse_request_topic(work.topic)
            except protocol.UnanswerableTopic:
                logger.warning("dropped a message on %r: no client to answer", work.topic[:300])
                work.decide(None)
                continue
            except BadRequest as exc:
                work.parsed = exc.topic  # type: ignore[attr-defined]
                work.decide(self._error(work, exc))
                continue
            try:
                envelope = protocol.decode_envelope(
                    work.raw, seq_id=work.parsed.seq_id, max_bytes=self.max_payload
                )
                work.route = self.routes.get(envelope.action)
                if work.route is None:
                    raise BadRequest(_("未知的 action：%(action)s") % {"action": envelope.action[:64]})
                work.payload = envelope.payload
            except MChatError as exc:
                work.decide(self._error(work, exc))

    def _identify_and_replay(self, works: list[_Work]) -> None:
        """Who is behind each connection (unknown or inactive: 401), and which requests were
        answered before: those get the same answer and execute nothing again. The same
        statement finds the employees that payloads name (BatchExecutor.payload_employees)."""
        open_works = [w for w in works if not w.decided]
        if not open_works:
            return
        named = {work: _payload_employee_ids(work) for work in open_works}
        employees, recorded = self._employees_and_records(
            {w.parsed.employee_id for w in open_works}.union(*named.values()), {w.key for w in open_works}
        )
        first_of: dict[tuple[str, str], _Work] = {}
        for work in open_works:
            work.employee = employees.get(work.parsed.employee_id)
            work.employees = {employee_id: employees.get(employee_id) for employee_id in named[work]}
            if work.employee is None:
                work.decide(self._error(work, Unauthenticated(_("连接未绑定到在职员工"))))
            elif work.key in recorded:
                work.decide(recorded[work.key], replayed=True)
            elif work.key in first_of:
                work.same_as = first_of[work.key]
                work.decided = True
            else:
                first_of[work.key] = work

    def _employees_and_records(
        self, employee_ids: set[str], keys: set[tuple[str, str]]
    ) -> tuple[dict[str, Employee], dict[tuple[str, str], dict | None]]:
        """The active employees by employee_id, and the recorded answers by key (None: still
        pending), in one statement: the employees' rows, then the answers' rows, whose
        employee columns are NULL."""
        quote = connection.ops.quote_name
        n_fields = len(Employee._meta.concrete_fields)
        people, people_params = value_in("e.employee_id", sorted(employee_ids), "text")
        asked, asked_params = rows_source([("client_id", "text"), ("seq_id", "text")], sorted(keys))
        sql = (
            f"SELECT {model_columns(Employee, 'e')}, NULL, NULL, NULL "
            f"FROM {quote(Employee._meta.db_table)} AS e WHERE e.is_active AND {people} "
            f"UNION ALL SELECT {', '.join(['NULL'] * n_fields)}, p.client_id, p.seq_id, p.response "
            f"FROM {quote(ProcessedRequest._meta.db_table)} AS p "
            f"WHERE (p.client_id, p.seq_id) IN (SELECT v.client_id, v.seq_id FROM {asked})"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*people_params, *asked_params])
            rows = cursor.fetchall()
        employees, recorded = {}, {}
        for row in rows:
            if row[0] is not None:
                employee = model_from_row(Employee, row[:n_fields])
                employees[employee.employee_id] = employee
            else:
                client_id, seq_id, answer = row[n_fields:]
                recorded[(client_id, seq_id)] = json.loads(answer) if isinstance(answer, str) else answer
        return employees, _with_resolved_waits(recorded)

    def _serve_optimistically(self, works: list[_Work]) -> bool:
        """A batch that is one run of a route whose executor has serve_known (msg.send_private,
        msg.send_group) goes to it before anyone is looked up: from what this process has seen before, it
        stores the whole batch with one statement that checks all of that, and the batch
        costs one round trip. True when it did; False when it could not (nothing done), and
        the batch goes through identity, idempotency, the rate limit and the route.

        Not for a batch with a repeat in it, or one the rate limit would refuse any part of:
        those need the usual order (an earlier answer comes before the limit)."""
        open_works = [w for w in works if not w.decided]
        if (
            not open_works
            or open_works[0].route.batch is None
            or open_works[0].route.batch.serve_known is None
        ):
            return False
        route = open_works[0].route
        if any(w.route is not route for w in open_works) or len({w.key for w in open_works}) < len(
            open_works
        ):
            return False
        if not self.limiter.take_all([(w.parsed.employee_id, route.action_class) for w in open_works]):
            return False
        for work in open_works:
            work.limited = True  # the usual way, if it comes to that, does not charge them again
        requests = [
            Request(w.parsed.client_id, w.parsed.seq_id, route.action, w.payload, None) for w in open_works
        ]
        try:
            results = route.batch.serve_known(requests)
        except Exception as exc:
            # A bug, not a refusal: logged, and the usual way answers (a send that was stored
            # is found again there by its (client_id, seq_id) and answered the same).
            internal_error_reply(exc, context="an executor's serve_known")
            connection.close_if_unusable_or_obsolete()
            return False
        if results is None:
            return False
        for work, data in zip(open_works, results, strict=True):
            work.decide(wire.response_payload(work.parsed.seq_id, 0, "ok", data))
        return True

    def _limit(self, works: list[_Work]) -> None:
        for work in works:
            if work.decided or work.limited:
                continue
            try:
                self.limiter.take(employee_id=work.employee.employee_id, action_class=work.route.action_class)
            except MChatError as exc:
                work.decide(self._error(work, exc))

    def _execute(self, works: list[_Work], *, whole: bool = True) -> None:
        batch = [w for w in works if not w.decided]
        if whole:
            self._database_down = False
            transactions = _transactions(_runs(batch))
            if len(transactions) > 1:
                # One transaction per run that may lock rows (_transactions), each in turn,
                # each served as a batch (its answers stand once it has committed).
                for runs in transactions:
                    part = [work for run in runs for work in run]
                    if self._database_down:  # found out by an earlier part: answer at once
                        for work in part:
                            work.decide(self._internal_error(work, OperationalError("database unreachable")))
                        continue
                    self._execute(part, whole=False)
                return
        if whole and len(batch) == 1 and not batch[0].route.serves_many:
            self._execute_one(batch[0], in_batch=False)
        elif batch:
            committed = False

            def mark_committed() -> None:
                nonlocal committed
                committed = True

            runs = _runs(batch)
            try:
                if len(runs) == 1 and runs[0][0].route.serves_many and runs[0][0].route.batch.commits_itself:
                    # Its handler commits what it writes. Called inside someone's transaction
                    # (a test's), a savepoint keeps that transaction usable for the fallback.
                    with transaction.atomic() if connection.in_atomic_block else nullcontext():
                        self._execute_many(runs[0])
                else:
                    with transaction.atomic():
                        transaction.on_commit(mark_committed)  # the first hook to run after COMMIT
                        for run in runs:
                            if run[0].route.serves_many:
                                self._execute_many(run)
                            else:
                                self._execute_one(run[0], in_batch=True)
            except Exception as exc:
                if committed:
                    # An after-commit hook failed: the batch is done and its answers stand.
                    internal_error_reply(exc, context="an after-commit hook of a batch")
                    return
                if isinstance(exc, IntegrityError):
                    # A race, not a repeat (the store leaves repeats out without an error): two
                    # processes inserting the same new row at once, e.g. the same request twice.
                    logger.info(
                        "a batch of %d requests clashed (%s); serving them one by one", len(batch), exc
                    )
                elif isinstance(exc, DatabaseError):
                    logger.warning(
                        "a batch of %d requests failed to commit; serving them one by one", len(batch)
                    )
                    connection.close_if_unusable_or_obsolete()
                else:
                    internal_error_reply(exc, context="a batch handler")  # logged; served one by one
                for work in batch:
                    work.response, work.decided, work.lost_race = None, False, False
                    if self._database_down:
                        # The database is gone: answer at once rather than wait for each.
                        work.decide(self._internal_error(work, exc))
                        continue
                    self._execute_one(work, in_batch=False)
        for work in batch:
            if work.lost_race:
                recorded = self._recorded({work.key})
                if work.key in recorded:
                    work.decide(recorded[work.key], replayed=True)
                else:
                    work.decide(self._internal_error(work, RuntimeError("recorded answer vanished")))

    def _execute_many(self, run: list[_Work]) -> None:
        """Requests of one action with a BatchExecutor: no savepoint each, one INSERT records
        every answer (only the refusals, for a route whose handler commits itself). Anything
        raised undoes the whole batch, which is then served one by one: a handler that
        commits itself finds what it already wrote and answers the same."""
        route = run[0].route
        requests = [
            Request(w.parsed.client_id, w.parsed.seq_id, route.action, w.payload, w.employee, w.employees)
            for w in run
        ]
        with audit_source("mqtt"):  # msg.send_private: messages are content, not audit rows
            results = route.batch.serve_many(requests)
        records = []
        for work, result in zip(run, results, strict=True):
            if isinstance(result, MChatError):
                response = self._error(work, result)
            elif isinstance(result, Deferred):
                response = None  # no answer yet; whoever resolves it publishes the answer
            else:
                response = wire.response_payload(work.parsed.seq_id, 0, "ok", result or {})
            work.decide(response)
            if route.batch.commits_itself and not isinstance(result, MChatError):
                continue  # its repeat finds what the handler wrote
            records.append(
                ProcessedRequest(
                    client_id=work.parsed.client_id,
                    seq_id=work.parsed.seq_id,
                    action=route.action,
                    response=response,
                )
            )
        rows_insert(records, fields=("client_id", "seq_id", "action", "response", "created_at"))

    def _execute_one(self, work: _Work, *, in_batch: bool) -> None:
        request = Request(
            work.parsed.client_id,
            work.parsed.seq_id,
            work.route.action,
            work.payload,
            work.employee,
            work.employees,
        )
        try:
            with transaction.atomic():
                # What the handler changes is audited as this connection's request.
                with audit_source("mqtt", client_id=request.client_id, seq_id=request.seq_id):
                    data = work.route.handler(request)
                if isinstance(data, Deferred):
                    response = None  # recorded as pending; whoever resolves it publishes the answer
                else:
                    response = wire.response_payload(
                        work.parsed.seq_id, 0, "ok", {} if data is None else data
                    )
                self._record(work, response)
            work.decide(response)
        except MChatError as exc:
            # A refusal is an answer too: a retry gets the same one and executes nothing.
            response = self._error(work, exc)
            try:
                with transaction.atomic():
                    self._record(work, response)
                work.decide(response)
            except IntegrityError:
                work.lost_race = True
            except DatabaseError:
                if in_batch:
                    raise
                connection.close_if_unusable_or_obsolete()
                work.decide(response)  # answered, though unrecorded
        except IntegrityError:
            # Another process recorded this request first, or the handler broke a constraint:
            # after commit, replay the recorded answer if there is one.
            work.lost_race = True
        except DatabaseError as exc:
            if in_batch:
                raise  # the batch's transaction is in doubt: serve each request on its own
            self._database_down = isinstance(exc, OperationalError)
            work.decide(self._internal_error(work, exc))
        except Exception as exc:
            work.decide(self._internal_error(work, exc))

    # --- answers ------------------------------------------------------------------------------

    def _record(self, work: _Work, response: dict | None) -> None:
        # One request's record; _execute_many inserts a run's in one statement.
        client_id, seq_id = work.key
        ProcessedRequest.objects.create(
            client_id=client_id, seq_id=seq_id, action=work.route.action, response=response
        )

    def _recorded(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict | None]:
        """Recorded answers by key; None for one still pending (a repeat publishes nothing)."""
        source, params = rows_source([("client_id", "text"), ("seq_id", "text")], sorted(keys))
        rows = ProcessedRequest.objects.raw(
            f"SELECT id, client_id, seq_id, response FROM {connection.ops.quote_name(ProcessedRequest._meta.db_table)} "
            f"WHERE (client_id, seq_id) IN (SELECT v.client_id, v.seq_id FROM {source})",
            params,
        )
        return _with_resolved_waits({(row.client_id, row.seq_id): row.response for row in rows})

    def _error(self, work: _Work, exc: MChatError) -> dict:
        # Messages may echo the client's input, lone surrogates included: keep what UTF-8 can
        # carry, so the answer recorded is the answer sent.
        message = str(exc.message).encode("utf-8", "replace").decode()
        return wire.response_payload(work.parsed.seq_id, exc.code, message, exc.data)

    def _internal_error(self, work: _Work, exc: BaseException) -> dict:
        if isinstance(exc, DatabaseError):
            # A broken connection must not poison the next request: drop it, reconnect lazily.
            connection.close_if_unusable_or_obsolete()
        message, data = internal_error_reply(exc, context=f"request on {work.topic!r}")
        return wire.response_payload(work.parsed.seq_id, 500, message, data)

    def _publish(self, work: _Work) -> Outcome:
        if work.same_as is not None:
            work.decide(work.same_as.response, replayed=True)
        if work.parsed is None or work.response is None:
            reply_topic = None if work.parsed is None else work.parsed.reply_topic
            return Outcome(reply_topic, None, action=work.route and work.route.action)
        try:
            self.publisher.publish(work.parsed.reply_topic, wire.encode(work.response), qos=1)
        except Exception as exc:
            internal_error_reply(exc, context=f"publishing the answer to {work.topic!r}")
        return Outcome(
            work.parsed.reply_topic, work.response, work.replayed, work.route and work.route.action
        )
