"""`make deb ARCH=arm64` (`make deb-test`): the node's .deb, its venv and C extension built in
an arm64 Debian 12 rootfs under qemu-user-static, installs with dpkg into a clean arm64
rootfs, and `earwitness detect` there prints byte for byte what it prints on this machine.

Slow: the rootfs are made once (build/ARCH/, ~5 min each) and kept; the venv is built
again every run (~10 min under emulation).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import node_audio
from conftest import pittsburgh_tests
from simulator.pps import Adc

pytestmark = [pytest.mark.package, pytest.mark.hil, pytest.mark.slow]

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGING = REPO / "hardware" / "packaging"
ARCH = os.environ.get("EARWITNESS_DEB_ARCH", "arm64")
# what the package depends on (its control file's Depends), so that dpkg -i finds them there
RUNTIME = "python3,openssl,gpsd,chrony,pps-tools,libportaudio2,libsndfile1,adduser"
BUILD_TIMEOUT_S = 3600
START_UTC = "2026-01-01T00:00:00Z"

tools = [t for t in ("mmdebstrap", "dpkg-deb", "unshare", f"qemu-{'aarch64' if ARCH == 'arm64' else ARCH}-static")
         if shutil.which(t) is None]
if tools or os.geteuid() != 0:
    pytest.skip(f"the package test needs root and {', '.join(tools) or 'nothing more'} (apt-get install mmdebstrap "
                "qemu-user-static binfmt-support; make deb-test runs it)", allow_module_level=True)


def run(*argv, timeout=BUILD_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def detect_args(wav_in_root: str) -> list[str]:
    return ["detect", "--sensor", "node", "--start-utc", START_UTC, wav_in_root]


@pytest.mark.timeout(2 * BUILD_TIMEOUT_S)
def test_the_package_built_for_another_architecture_detects_as_this_machine_does(tmp_path):
    build = run("make", "-C", REPO, "deb", f"ARCH={ARCH}")
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    deb = REPO / "build" / f"earwitness-node_{version}_{ARCH}.deb"
    assert deb.exists(), build.stdout

    base = REPO / "build" / ARCH / "test-rootfs"
    made = run(PACKAGING / "rootfs.sh", "make", ARCH, base, RUNTIME)
    assert made.returncode == 0, made.stderr[-3000:]
    root = tmp_path / "root"  # a clean copy for each run: dpkg -i into what nobody touched
    assert run("cp", "-a", base, root).returncode == 0
    shutil.copy(deb, root / "tmp" / deb.name)
    wavs = [tmp_path / "shots.wav"]
    node_audio.write(wavs[0], 6, [1.3, 2.9, 4.4], pps=Adc(t0_s=0.25, ppm=30.0))
    wavs += [next(t.glob("*.wav")) for t in pittsburgh_tests()[:1]]  # a real recording where the data is here
    for i, wav in enumerate(wavs):
        shutil.copy(wav, root / "tmp" / f"{i}.wav")

    try:
        _install_and_compare(root, deb, wavs)
    finally:
        shutil.rmtree(root)  # a rootfs copy is hundreds of MB


def _install_and_compare(root: pathlib.Path, deb: pathlib.Path, wavs: list[pathlib.Path]) -> None:
    installed = run(PACKAGING / "rootfs.sh", "run", root, "dpkg", "-i", f"/tmp/{deb.name}")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    arch = run(PACKAGING / "rootfs.sh", "run", root, "dpkg", "--print-architecture")
    assert arch.stdout.strip() == ARCH
    for i, wav in enumerate(wavs):
        here = run(sys.executable, "-m", "earwitness", *detect_args(str(wav)), timeout=120)
        there = run(PACKAGING / "rootfs.sh", "run", root, "/opt/earwitness/.venv/bin/earwitness",
                    *detect_args(f"/tmp/{i}.wav"), timeout=600)
        assert here.returncode == 0 and there.returncode == 0, here.stderr + there.stderr
        assert here.stdout.count("\n") >= 3
        assert there.stdout == here.stdout, (here.stdout, there.stdout)
