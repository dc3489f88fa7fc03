"""An AI agent with one skill, "订单查询": answers questions like "订单 1001 到哪了？" from a
small table in this file.

Private questions are tasks: the runtime reports `working`, the agent shows a status
("正在查询订单…") and streams its answer one order at a time (the recipient may stop it), and
the runtime reports `completed`. In groups
(when mentioned) it answers with one message.

    python -m mchat_sdk.examples.order_agent --connection agent.json

`agent.json` holds the agent's `mqtt_connection` (the employee.create answer, or the file the
admin console offers). Stop it with Ctrl-C: messages being answered are finished first.
"""

from __future__ import annotations

import argparse
import logging
import re

from mchat_sdk import Agent, Incoming

ORDERS = {
    "1001": {
        "item": "ThinkPad X1 笔记本电脑",
        "status": "已发货",
        "carrier": "顺丰速运",
        "tracking": "SF1234567890",
        "eta": "2月5日",
    },
    "1002": {"item": "27 寸显示器 ×2", "status": "待付款", "carrier": "", "tracking": "", "eta": ""},
    "1003": {
        "item": "人体工学椅",
        "status": "已签收",
        "carrier": "京东物流",
        "tracking": "JD0099887766",
        "eta": "",
    },
}
ORDER_NUMBER = re.compile(r"\d{4,}")
MAX_ORDERS_PER_QUESTION = 5


def describe(number: str) -> str:
    order = ORDERS.get(number)
    if order is None:
        return f"没有找到订单 {number}，请核对订单号。"
    text = f"订单 {number}（{order['item']}）：{order['status']}"
    if order["carrier"]:
        text += f"，{order['carrier']} {order['tracking']}"
    if order["eta"]:
        text += f"，预计 {order['eta']} 送达"
    return text + "。"


def answer_lines(text: str) -> list[str]:
    numbers = list(dict.fromkeys(ORDER_NUMBER.findall(text)))
    if not numbers:
        return ["您好，我是订单查询助手。请告诉我订单号，例如：订单 1001"]
    return [describe(n) for n in numbers[:MAX_ORDERS_PER_QUESTION]]


def answer(incoming: Incoming) -> str | None:
    """The reply to one message. Private: streamed, with a "thinking" status and the task's
    states (the runtime reports completed when this returns); groups: one message."""
    lines = answer_lines(incoming.text)
    if not incoming.is_task:
        return "\n".join(lines)
    # The runtime has reported `working` already (and reports `completed` after this returns).
    incoming.status("正在查询订单…")
    with incoming.stream() as reply:
        for index, line in enumerate(lines):
            reply.append(("\n" if index else "") + line)
    return None  # streamed already


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="订单查询 agent (MChat SDK example)")
    parser.add_argument("--connection", required=True, help="JSON file with the agent's mqtt_connection")
    parser.add_argument("--device", default="agent", help="device part of the client id (default: agent)")
    parser.add_argument("--concurrency", type=int, default=4, help="messages answered at the same time")
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=24 * 3600,
        help="seconds the broker queues messages for the agent while it is stopped (0: none)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    agent = Agent.from_file(
        args.connection,
        answer,
        device=args.device,
        concurrency=args.concurrency,
        session_expiry=args.session_expiry,
    )
    agent.run_forever()


if __name__ == "__main__":
    main()
