"""bridge.gathering is a fork of parts of paho-mqtt 2.2 that uses paho's internals. These tests
fail, naming the member, when the installed paho no longer has one of them, and check that
the fork refuses what it cannot do (another paho series; paho's own network threads).

The private members are read from gathering.py's source, so a new one used there is checked
without anyone adding it here."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest

from bridge import gathering
from bridge.gathering import GatheringClient

SOURCE = Path(gathering.__file__)

# Private members reached through something other than `self`, `super()` or the `mqtt`
# module (a message's info object): where paho defines each. A new one used in gathering.py
# fails test_every_private_member_reached_through_other_objects_is_known until listed here.
OTHER_PRIVATE_MEMBERS = {"_set_as_published": mqtt.MQTTMessageInfo}


def _client_class() -> ast.ClassDef:
    tree = ast.parse(SOURCE.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GatheringClient")


def _own_members(cls: ast.ClassDef) -> set[str]:
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    names |= {t.id for n in cls.body if isinstance(n, ast.AnnAssign | ast.Assign) for t in _targets(n)}
    return names


def _targets(node: ast.AnnAssign | ast.Assign) -> list[ast.Name]:
    targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
    return [t for t in targets if isinstance(t, ast.Name)]


def _dotted(node: ast.expr) -> str | None:
    """'mqtt.A.B' for a chain of attributes on the name `mqtt`, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "mqtt":
        return ".".join(reversed(parts))
    return None


def _uses() -> dict[str, set[str]]:
    cls = _client_class()
    uses: dict[str, set[str]] = {"self": set(), "super": set(), "mqtt": set(), "other": set()}
    for node in ast.walk(cls):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id == "self":
            uses["self"].add(node.attr)
        elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            uses["super"].add(node.attr)
        elif (chain := _dotted(node)) is not None:
            uses["mqtt"].add(chain)
        elif node.attr.startswith("_"):
            uses["other"].add(node.attr)
    # the longest chains only: mqtt._ConnectionState.MQTT_CS_CONNECTED covers mqtt._ConnectionState
    uses["mqtt"] = {c for c in uses["mqtt"] if not any(o.startswith(c + ".") for o in uses["mqtt"])}
    uses["self"] -= _own_members(cls)
    return uses


def _paho_client() -> mqtt.Client:
    return mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv5, manual_ack=True
    )


def test_the_source_scan_finds_the_members_it_is_meant_to_check():
    uses = _uses()
    # A few that gathering.py is known to use: the scan itself must see them.
    assert {"_out_messages", "_in_packet", "_state", "_sock"} <= uses["self"]
    assert {"_handle_publish", "_handle_pubackcomp", "_create_socket"} <= uses["super"]
    assert "_ConnectionState.MQTT_CS_CONNECTED" in uses["mqtt"]
    assert "_usual_write" not in uses["self"]  # gathering's own, not paho's


def test_every_paho_client_member_used_through_self_exists():
    client = _paho_client()
    missing = sorted(name for name in _uses()["self"] if not hasattr(client, name))
    assert missing == [], (
        f"paho {paho.mqtt.__version__} Client lacks {missing}: bridge/gathering.py must be ported"
    )


def test_every_paho_method_called_through_super_exists():
    missing = sorted(name for name in _uses()["super"] if not hasattr(mqtt.Client, name))
    assert missing == [], (
        f"paho {paho.mqtt.__version__} Client lacks {missing}: bridge/gathering.py must be ported"
    )


def test_every_name_used_from_the_paho_module_exists():
    missing = []
    for chain in sorted(_uses()["mqtt"]):
        target = mqtt
        for part in chain.split("."):
            if not hasattr(target, part):
                missing.append(f"mqtt.{chain}")
                break
            target = getattr(target, part)
    assert missing == [], f"paho {paho.mqtt.__version__} lacks {missing}: bridge/gathering.py must be ported"


def test_every_private_member_reached_through_other_objects_is_known():
    unknown = sorted(_uses()["other"] - OTHER_PRIVATE_MEMBERS.keys())
    assert unknown == [], (
        f"bridge/gathering.py uses {unknown}: add where paho defines each to OTHER_PRIVATE_MEMBERS"
    )
    missing = sorted(name for name, owner in OTHER_PRIVATE_MEMBERS.items() if not hasattr(owner, name))
    assert missing == [], f"paho {paho.mqtt.__version__} lacks {missing}"


def test_the_packet_and_message_internals_gathering_reads_and_fills_exist():
    assert {"command", "packet"} <= _paho_client()._in_packet.keys()
    message = mqtt.MQTTMessage(1, b"t")
    for name in ("timestamp", "payload", "qos", "retain", "dup", "state", "info"):
        assert hasattr(message, name), f"paho's MQTTMessage has no {name}"


def test_overridden_paho_methods_take_the_same_arguments():
    cls = _client_class()
    for node in cls.body:
        if not isinstance(node, ast.FunctionDef) or not hasattr(mqtt.Client, node.name):
            continue
        ours = inspect.signature(getattr(GatheringClient, node.name)).parameters
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in ours.values()):
            continue  # takes anything
        theirs = inspect.signature(getattr(mqtt.Client, node.name)).parameters
        assert list(ours) == list(theirs), f"GatheringClient.{node.name}{list(ours)} vs paho's {list(theirs)}"


def test_paho_s_own_network_threads_are_refused():
    client = GatheringClient(mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv5)
    with pytest.raises(RuntimeError, match="flush"):
        client.loop_start()
    with pytest.raises(RuntimeError, match="flush"):
        client.loop_forever()
    assert client._thread is None  # no network thread was started


def _import_gathering_afresh():
    spec = importlib.util.spec_from_file_location("gathering_under_test", SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", ["2.1.0", "2.3.0", "3.0.0"])
def test_another_paho_series_fails_at_import_saying_why(monkeypatch, version):
    monkeypatch.setattr(paho.mqtt, "__version__", version)
    with pytest.raises(ImportError, match=rf"paho-mqtt 2\.2\.x internals, but paho-mqtt {version}"):
        _import_gathering_afresh()


def test_any_2_2_release_imports(monkeypatch):
    monkeypatch.setattr(paho.mqtt, "__version__", "2.2.7")
    assert _import_gathering_afresh().PAHO_SERIES == "2.2"
