"""`python -m mchat_sdk chat --connection FILE`: the terminal chat client (mchat_sdk.chat)."""

import argparse
import sys

from mchat_sdk import chat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mchat_sdk", description="MChat Python SDK tools")
    commands = parser.add_subparsers(dest="command", required=True)
    chat.add_arguments(commands.add_parser("chat", help="chat in the terminal"))
    args = parser.parse_args(argv)
    return chat.run(args)


if __name__ == "__main__":
    sys.exit(main())
