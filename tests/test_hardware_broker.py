"""The production broker configuration (hardware/broker/) with a real mosquitto: TLS with
client certificates from a throwaway CA, and the ACL that keeps each node to its own topics.

The test configuration is generated from the production file (port and folders
substituted), so what is tested is what is deployed.
"""
from __future__ import annotations

import pytest

from simulator.broker import LOOPBACK, Collector, Mosquitto, free_port, wait_until
from site_broker import BROKER_DIR, broker_config
from tls_certs import make_pki

pytestmark = pytest.mark.integration

SITE = "pgh"
NODE_A, NODE_B, FUSION, DISPATCH = "roof-a", "roof-b", "fusion", "dispatch"
WAIT_S = 10.0


def received_once_arrived(client: Collector, topic_: str, payload: bytes) -> list[tuple[str, bytes]]:
    """Waits until (topic, payload) arrived at ``client``; returns everything it received up to then."""
    arrived = wait_until(lambda: client.has(topic_, payload), WAIT_S)
    got = [(m.topic, m.payload) for m in client.received()]
    assert arrived, f"{topic_} {payload!r} never arrived; got {got}"
    return got


def topic(node: str, kind: str) -> str:
    return f"ew/v1/{SITE}/node/{node}/{kind}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hw-broker")
    pki = make_pki(root / "pki", clients=(NODE_A, NODE_B, FUSION, DISPATCH))
    port = free_port()
    conf = broker_config((BROKER_DIR / "mosquitto.conf").read_text(), port, root / "pki", root / "broker")
    broker = Mosquitto(root / "broker", port=port, conf=conf).start()
    clients = []

    def connect(name, pki_=pki, client_id=None):
        """A TLS MQTT v5 client; ``name`` picks its certificate (None: no certificate)."""
        tls = {"ca": pki_["ca"], "cert": pki_[f"{name}_cert"] if name else None,
               "key": pki_[f"{name}_key"] if name else None}
        c = Collector(f"mqtts://{LOOPBACK}:{port}", client_id=client_id or f"test-{name}-{len(clients)}", tls=tls)
        clients.append(c)
        try:
            c.start(WAIT_S)
        except ConnectionError:
            pass     # refused: c.connected is False
        return c

    try:
        yield {"root": root, "connect": connect}
    finally:
        for c in clients:
            c.close()
        broker.stop()


def test_a_node_publishes_its_pulses_and_fusion_receives_them(site):
    fusion = site["connect"](FUSION)
    node = site["connect"](NODE_A)
    assert fusion.connected and node.connected
    assert fusion.subscribe(f"ew/v1/{SITE}/node/+/pulse")
    node.publish(topic(NODE_A, "pulse"), b"pulse-1")
    assert (topic(NODE_A, "pulse"), b"pulse-1") in received_once_arrived(fusion, topic(NODE_A, "pulse"), b"pulse-1")


def test_a_node_cannot_publish_as_another_node_nor_as_the_server(site):
    fusion, dispatch, node = site["connect"](FUSION), site["connect"](DISPATCH), site["connect"](NODE_A)
    assert fusion.subscribe(f"ew/v1/{SITE}/node/+/pulse") and dispatch.subscribe(f"ew/v1/{SITE}/incident/#")
    node.publish(topic(NODE_B, "pulse"), b"forged")
    node.publish(f"ew/v1/{SITE}/incident", b"forged")
    # QoS 1 from one client keeps its order: once the later message is in, the forged one
    # would have been too.
    node.publish(topic(NODE_A, "pulse"), b"after")
    got = received_once_arrived(fusion, topic(NODE_A, "pulse"), b"after")
    assert [p for _, p in got] == [b"after"]
    fusion.publish(f"ew/v1/{SITE}/incident", b"alert")
    assert [p for _, p in received_once_arrived(dispatch, f"ew/v1/{SITE}/incident", b"alert")] == [b"alert"]


def test_a_node_reads_only_its_own_commands(site):
    fusion, node, other = site["connect"](FUSION), site["connect"](NODE_A), site["connect"](NODE_B)
    assert fusion.subscribe(f"ew/v1/{SITE}/node/+/pulse")
    # mosquitto grants any subscription and applies the ACL's read rules on delivery
    for t in (topic(NODE_A, "cmd"), topic(NODE_B, "cmd"), f"ew/v1/{SITE}/node/+/pulse"):
        node.subscribe(t)
    other.publish(topic(NODE_B, "pulse"), b"b's pulse")
    received_once_arrived(fusion, topic(NODE_B, "pulse"), b"b's pulse")
    fusion.publish(topic(NODE_B, "cmd"), b'{"cmd":"health"}')
    fusion.publish(topic(NODE_A, "cmd"), b'{"cmd":"clip"}')
    assert received_once_arrived(node, topic(NODE_A, "cmd"), b'{"cmd":"clip"}') == [(topic(NODE_A, "cmd"), b'{"cmd":"clip"}')]


def test_fusion_cannot_forge_a_pulse(site):
    fusion, node = site["connect"](FUSION), site["connect"](NODE_A)
    assert fusion.subscribe(f"ew/v1/{SITE}/node/+/pulse")
    fusion.publish(topic(NODE_A, "pulse"), b"forged by fusion")
    node.publish(topic(NODE_A, "pulse"), b"real")
    assert [p for _, p in received_once_arrived(fusion, topic(NODE_A, "pulse"), b"real")] == [b"real"]


def test_fusion_workers_forward_pulses_to_cells_and_nodes_cannot(site):
    """Scale-out: a worker forwards pulses to the worker owning a cell; a node may not inject there."""
    cell = f"ew/v1/{SITE}/worker/0/pulse"
    owner, other, node = site["connect"](FUSION), site["connect"](FUSION), site["connect"](NODE_A)
    assert owner.subscribe(cell)
    node.publish(cell, b"injected by a node")
    other.publish(cell, b"forwarded")
    assert [p for _, p in received_once_arrived(owner, cell, b"forwarded")] == [b"forwarded"]


def test_clients_without_a_certificate_of_the_site_ca_are_refused(site):
    assert not site["connect"](None).connected
    rogue = make_pki(site["root"] / "rogue", clients=(NODE_A,))
    rogue["ca"] = site["root"] / "pki" / "ca.pem"  # trusts the real broker, presents a rogue certificate
    assert not site["connect"](NODE_A, pki_=rogue).connected
    assert site["connect"](NODE_A).connected  # the real certificate of the same name still works


def test_a_node_provisioned_by_provision_sh_publishes_with_its_certificate(site, tmp_path):
    from provisioning import provision
    from tls_certs import sign

    dest = tmp_path / "etc"
    provision(dest, "--node", NODE_B, "--site", SITE, "--broker", "mqtts://127.0.0.1:8883")
    sign(site["root"] / "pki", dest / f"{NODE_B}.csr", dest / "node.pem")
    fusion = site["connect"](FUSION)
    node = site["connect"](NODE_B, pki_={"ca": site["root"] / "pki" / "ca.pem", f"{NODE_B}_cert": dest / "node.pem",
                                         f"{NODE_B}_key": dest / "node-key.pem"})
    assert node.connected and fusion.subscribe(f"ew/v1/{SITE}/node/+/pulse")
    node.publish(topic(NODE_A, "pulse"), b"not mine")
    node.publish(topic(NODE_B, "pulse"), b"mine")
    assert [p for _, p in received_once_arrived(fusion, topic(NODE_B, "pulse"), b"mine")] == [b"mine"]
