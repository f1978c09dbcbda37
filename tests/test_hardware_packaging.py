"""hardware/packaging/build-deb.sh builds a Debian package dpkg accepts, with the node's files."""
from __future__ import annotations

import os
import pathlib
import subprocess

HARDWARE = pathlib.Path(__file__).resolve().parents[1] / "hardware"
INSTALLED = {  # path in the package: file in hardware/
    "lib/systemd/system/earwitness-node.service": "node/earwitness-node.service",
    "lib/udev/rules.d/90-earwitness.rules": "udev/90-earwitness.rules",
    "usr/sbin/earwitness-provision": "provision.sh",
    "usr/share/earwitness/node.toml": "node/node.toml",
    "usr/share/earwitness/chrony.conf": "chrony/chrony.conf",
    "usr/share/earwitness/gpsd.default": "gpsd/gpsd.default",
    "usr/share/earwitness/config.txt": "boot/config.txt",
}


def _dpkg_deb(*args) -> str:
    return subprocess.run(["dpkg-deb", *map(str, args)], capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_package_holds_the_node_files_and_scripts(tmp_path):
    build = subprocess.run([str(HARDWARE / "packaging" / "build-deb.sh"), "--no-venv", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    deb = pathlib.Path(build.stdout.strip())
    assert deb.parent == tmp_path / "out" and deb.name.startswith("earwitness-node_")
    control = dict(line.split(": ", 1) for line in _dpkg_deb("-f", deb).splitlines() if ": " in line)
    assert control["Package"] == "earwitness-node"
    assert {"gpsd", "chrony", "pps-tools", "openssl"} <= {d.strip().split()[0] for d in control["Depends"].split(",")}
    root = tmp_path / "root"
    _dpkg_deb("-x", deb, root)
    for installed, source in INSTALLED.items():
        assert (root / installed).read_bytes() == (HARDWARE / source).read_bytes(), installed
    assert (root / "usr/sbin/earwitness-provision").stat().st_mode & 0o111
    control_dir = tmp_path / "control"
    _dpkg_deb("-e", deb, control_dir)
    for script in ("postinst", "prerm"):
        assert subprocess.run(["sh", "-n", str(control_dir / script)]).returncode == 0, script
    unit = (root / "lib/systemd/system/earwitness-node.service").read_text()
    assert "ExecStart=/opt/earwitness/.venv/bin/earwitness node" in unit


def test_a_bad_call_is_one_line_and_exit_2(tmp_path):
    run = subprocess.run([str(HARDWARE / "packaging" / "build-deb.sh")], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "usage" in run.stderr


def test_a_venv_built_elsewhere_is_packaged_for_its_architecture(tmp_path):
    """cross-deb.sh's last step: the venv an arm64 rootfs built, packaged here for arm64."""
    venv = tmp_path / "rootfs" / "opt" / "earwitness" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n")
    (venv / "bin" / "earwitness").write_text("#!/opt/earwitness/.venv/bin/python3\n")
    build = subprocess.run([str(HARDWARE / "packaging" / "build-deb.sh"), str(tmp_path / "out")], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "VENV_FROM": str(venv), "DEB_ARCH": "arm64"})
    assert build.returncode == 0, build.stderr
    deb = pathlib.Path(build.stdout.strip())
    assert deb.name.endswith("_arm64.deb")
    control = dict(line.split(": ", 1) for line in _dpkg_deb("-f", deb).splitlines() if ": " in line)
    assert control["Architecture"] == "arm64"
    assert control["Depends"].startswith("python3 (>= 3.11), python3 (<< 3.12), ")
    root = tmp_path / "root"
    _dpkg_deb("-x", deb, root)
    assert (root / "opt/earwitness/.venv/bin/earwitness").read_text() == "#!/opt/earwitness/.venv/bin/python3\n"
