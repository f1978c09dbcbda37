"""`make image-test`: the flashable node image (`make image`) boots in qemu-system-aarch64
(-M virt, no network device), provisions itself from earwitness.toml on its boot partition,
waits for its certificate, and once node.pem is on the boot partition its node service runs,
here reading a WAV (node.toml on the boot partition: the site's template) instead of a sound
card, and puts the shots it detects into its outbox. The outbox is read from the powered-off
image with debugfs and compared with `earwitness detect` on the same WAV on this machine.

Slow: the image's operating system is built once under emulation (build/arm64/, ~30 min);
the two boots take a few minutes.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

import hil_rig
import node_audio
from disk_image import DiskImage, Guest, run
from earwitness import wire
from edge.utctime import format_utc_ns
from simulator.pps import Adc
from tls_certs import make_pki, sign

pytestmark = [pytest.mark.image, pytest.mark.slow]

REPO = pathlib.Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "hardware" / "node" / "node.toml"
IMAGE = REPO / "build" / "earwitness-node-arm64.img"
BUILD_TIMEOUT_S = 3 * 3600
BOOT_TIMEOUT_S = 600  # to the first boot's provisioning under full emulation on a busy machine
NODE_TIMEOUT_S = 900  # second boot, node start, the WAV, its drain, shutdown
NODE, SITE = "roof-img", "pgh"
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
SHOTS_S = [1.3, 2.9, 4.4]
ADC = Adc(t0_s=START_NS / 1e9 + 0.25, ppm=30.0)
PPS_TOL_NS = 5_000  # the node's streaming clock model against detect's, both from the PPS channel
CSR_RE = re.compile(r"^-----BEGIN CERTIFICATE REQUEST-----\n.*?-----END CERTIFICATE REQUEST-----\n", re.S | re.M)
# the journal's copy on the console: "[  107.03] firstboot.sh[340]: " before each line
JOURNAL_PREFIX_RE = re.compile(r"^\[\s*[\d.]+\] firstboot\.sh\[\d+\]: ", re.M)
DROP_IN = "/etc/systemd/system/earwitness-node.service.d/image-test.conf"

tools = [t for t in ("qemu-system-aarch64", "debugfs", "mcopy", "mkfs.vfat", "sfdisk", "mmdebstrap", "qemu-aarch64-static",
                     "openssl") if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
if tools or os.geteuid() != 0:
    pytest.skip(f"the image test needs root and {', '.join(tools) or 'nothing more'} (apt-get install mmdebstrap "
                "qemu-user-static binfmt-support qemu-system-arm mtools dosfstools fdisk)", allow_module_level=True)


def provisioning(folder: pathlib.Path, ca: pathlib.Path) -> pathlib.Path:
    path = folder / "earwitness.toml"
    path.write_text(f'node = "{NODE}"\nsite = "{SITE}"\nbroker = "mqtts://broker.invalid:8883"\n'
                    f'ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3x test@image"]\n'
                    f'ca = """\n{ca.read_text()}"""\n')
    return path


def wav_template(folder: pathlib.Path) -> pathlib.Path:
    """hardware/node/node.toml with the sound card swapped for the WAV on the boot partition."""
    substitutions = {
        'source = "device"': f'source = "wav"\npath = "/boot/firmware/shots.wav"\nrealtime = false\n'
                             f'start_utc = "{format_utc_ns(START_NS)}"',
        'gps_port = "/dev/ttyAMA0"': "",  # the guest's ttyAMA0 is its console; the WAV's PPS times it
        "[outbox]": "[outbox]\ndrain_timeout_s = 5",
    }
    return hil_rig.node_toml_from(TEMPLATE, substitutions, folder / "node.toml")


def boot(disk: DiskImage, folder: pathlib.Path, name: str) -> Guest:
    files = disk.boot_files()
    kernel = next(f for f in files if f.startswith("vmlinuz"))
    initrd = next(f for f in files if f.startswith("initrd.img"))
    append = "root=LABEL=EWROOT console=ttyAMA0 systemd.journald.forward_to_console=1"
    return Guest(disk, disk.boot_get(kernel, folder / kernel), disk.boot_get(initrd, folder / initrd), append,
                 folder / f"{name}.console")


def detect_natively(wav: pathlib.Path) -> list[dict]:
    out = run(sys.executable, "-m", "earwitness", "detect", "--sensor", NODE, "--start-utc", format_utc_ns(START_NS),
              "--pps-channel", "1", wav).stdout
    return [json.loads(line) for line in out.splitlines()]


def outbox_pulses(disk: DiskImage, folder: pathlib.Path, public_hex: str) -> list[wire.PulseMessage]:
    db = disk.root_get("/var/lib/earwitness/outbox.db", folder / "outbox.db")
    assert db is not None, "no outbox in the image"
    disk.root_get("/var/lib/earwitness/outbox.db-wal", folder / "outbox.db-wal")
    with sqlite3.connect(db) as con:
        payloads = [row[0] for row in con.execute("SELECT payload FROM pulse ORDER BY seq")]
    keys = wire.Keyring({NODE: public_hex})
    return [wire.decode(p, keys, topic_node=NODE) for p in payloads]  # signed by the key it printed


@pytest.mark.timeout(BUILD_TIMEOUT_S + BOOT_TIMEOUT_S + NODE_TIMEOUT_S)
def test_the_image_boots_provisions_itself_and_its_node_detects_as_this_machine_does(tmp_path):
    build = subprocess.run(["make", "-C", str(REPO), "image"], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    img = tmp_path / "node.img"  # a copy: the built image stays unprovisioned
    run("cp", "--sparse=always", IMAGE, img)
    disk = DiskImage(img)
    pki = make_pki(tmp_path / "pki", clients=())
    wav = tmp_path / "shots.wav"
    node_audio.write(wav, 6, SHOTS_S, pps=ADC)
    disk.boot_put(provisioning(tmp_path, pki["ca"]), "earwitness.toml")
    disk.boot_put(wav_template(tmp_path), "node.toml")
    disk.boot_put(wav, "shots.wav")
    # the test's only change to the root: the node powers the guest off when the WAV is done
    drop_in = tmp_path / "image-test.conf"
    drop_in.write_text("[Unit]\nSuccessAction=poweroff\n[Service]\nRestart=on-failure\n")
    disk.root_put(drop_in, DROP_IN)

    first = boot(disk, tmp_path, "boot1")
    try:
        provisioned_s = first.wait_for("earwitness-firstboot: waiting for the node's certificate", BOOT_TIMEOUT_S)
        first.wait_for("Finished earwitness-firstboot.service", BOOT_TIMEOUT_S)  # its last step: sync
        off_s = first.pull_plug()  # first boot synced before it said so
    finally:
        first.kill()
    console = JOURNAL_PREFIX_RE.sub("", first.text())
    public_hex = re.search(r"earwitness-firstboot: public key: ([0-9a-f]{64})", console).group(1)
    csr = CSR_RE.search(console).group(0)
    assert disk.boot_get(f"{NODE}.csr", tmp_path / "from-boot.csr").read_text() == csr
    assert "earwitness.toml.done" in disk.boot_files() and "earwitness.toml" not in disk.boot_files()
    assert disk.root_get("/etc/ssh/ssh_host_ed25519_key.pub", tmp_path / "host.pub") is not None
    (tmp_path / "node.csr").write_text(csr)
    disk.boot_put(sign(tmp_path / "pki", tmp_path / "node.csr", tmp_path / "node.pem"), "node.pem")

    second = boot(disk, tmp_path, "boot2")
    try:
        second.wait_for("earwitness-firstboot: certificate installed; the node starts", BOOT_TIMEOUT_S)
        node_done_s = second.wait_exit(NODE_TIMEOUT_S)
    finally:
        second.kill()
    print(f"\nimage boot 1: provisioned after {provisioned_s:.0f} s, off after {off_s:.0f} s; "
          f"boot 2: the node's WAV done and powered off after {node_done_s:.0f} s")

    pulses = outbox_pulses(disk, tmp_path, public_hex)
    native = detect_natively(wav)
    assert len(native) == len(SHOTS_S)
    assert [p.seq for p in pulses] == list(range(1, len(native) + 1)), second.text()[-3000:]
    for got, want in zip(pulses, native):
        assert got.timing == want["timing"] == "pps-audio"
        assert abs(got.t_ns - want["t_ns"]) < PPS_TOL_NS
        for feature in ("peak_dbfs", "snr_db"):
            assert got.features[feature] == pytest.approx(want[feature], abs=0.01)
