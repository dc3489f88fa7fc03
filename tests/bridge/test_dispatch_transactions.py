"""How the dispatcher cuts a batch into transactions: at most one run that may lock rows in
each, read routes sharing them (docs/architecture.md, "Row locks"). The two-bridge run on
PostgreSQL that this prevents deadlocking is tests/resilience/test_lock_order.py."""

from bridge.dispatch import _runs, _transactions, _Work
from bridge.routes import ROUTES


def _work(action: str) -> _Work:
    work = _Work(topic=f"mchat/msg/req/emp_x_001_d/{action}", raw=b"{}")
    work.route = ROUTES[action]
    return work


def _actions(transactions) -> list[list[list[str]]]:
    return [[[w.route.action for w in run] for run in runs] for runs in transactions]


def test_each_locking_run_has_a_transaction_of_its_own_reads_share():
    batch = [
        _work(action)
        for action in (
            "msg.read_ack",
            "org.tree",
            "msg.send_group",
            "msg.send_private",
            "msg.send_private",
            "msg.history",
            "conversation.list",
            "msg.read_ack",
        )
    ]
    assert _actions(_transactions(_runs(batch))) == [
        [["msg.read_ack"], ["org.tree"]],
        [["msg.send_group"]],
        [["msg.send_private", "msg.send_private"], ["msg.history"], ["conversation.list"]],
        [["msg.read_ack"]],
    ]


def test_reads_alone_and_one_run_stay_one_transaction():
    reads = [_work("org.tree"), _work("msg.history"), _work("group.list")]
    assert len(_transactions(_runs(reads))) == 1
    sends = [_work("msg.send_private") for _ in range(5)]
    assert _actions(_transactions(_runs(sends))) == [[["msg.send_private"] * 5]]
    assert _transactions([]) == []


def test_read_routes_are_the_ones_without_writes():
    # A route of class "read" may share a transaction with a locking one: none of them writes
    # rows another request locks. A new read route that writes must take another class.
    assert sorted(a for a, r in ROUTES.items() if r.action_class == "read") == [
        "agent.capability_list",
        "agent.card",
        "audit.list",
        "config.storage",
        "conversation.list",
        "file.download_url",
        "group.info",
        "group.list",
        "msg.history",
        "org.tree",
    ]
