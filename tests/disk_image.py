"""A disk image's partitions and files without mounting it, and a qemu-system-aarch64 guest.

The boot partition (FAT) is read and written with mtools (``mcopy -i IMAGE@@OFFSET``), the
root (ext4) with debugfs (``IMAGE?offset=N``); the guest boots the kernel and initrd taken
from the boot partition, with no network device at all (``-nic none``).
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import time

SECTOR_BYTES = 512
QEMU_MEMORY_MIB = 1024
POLL_S = 0.5


def run(*argv, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


class DiskImage:
    """The two partitions of the node image: 1 = boot (FAT), 2 = root (ext4)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        table = json.loads(run("sfdisk", "--json", path).stdout)["partitiontable"]
        self.offsets = [p["start"] * SECTOR_BYTES for p in table["partitions"]]

    def _fat(self) -> str:
        return f"{self.path}@@{self.offsets[0]}"

    def _ext4(self) -> str:
        return f"{self.path}?offset={self.offsets[1]}"

    def boot_files(self) -> list[str]:
        return run("mdir", "-b", "-i", self._fat(), "::").stdout.replace("::/", "").split()

    def boot_get(self, name: str, dest: pathlib.Path) -> pathlib.Path:
        run("mcopy", "-n", "-i", self._fat(), f"::{name}", dest)
        return dest

    def boot_put(self, src: pathlib.Path, name: str) -> None:
        run("mcopy", "-o", "-i", self._fat(), src, f"::{name}")

    def root_get(self, path: str, dest: pathlib.Path) -> pathlib.Path | None:
        """Copy a file out of the root file system; None when it is not there."""
        if f"{path}:" in run("debugfs", "-R", f"stat {path}", self._ext4(), check=False).stderr:
            return None  # "stat PATH: File not found by ext2_lookup"
        run("debugfs", "-R", f"dump {path} {dest}", self._ext4())
        return dest

    def root_put(self, src: pathlib.Path, path: str) -> None:
        """Write a new file into the root file system (its folder made when missing)."""
        folder = path.rsplit("/", 1)[0]
        run("debugfs", "-w", "-R", f"mkdir {folder}", self._ext4(), check=False)
        run("debugfs", "-w", "-R", f"write {src} {path}", self._ext4())


class Guest:
    """qemu-system-aarch64 -M virt booting ``image``: serial console to ``console``, no network."""

    def __init__(self, image: DiskImage, kernel: pathlib.Path, initrd: pathlib.Path, append: str,
                 console: pathlib.Path):
        self.console = console
        self.proc = subprocess.Popen([
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", str(QEMU_MEMORY_MIB),
            "-nographic", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-drive", f"file={image.path},format=raw,if=virtio", "-nic", "none",
            "-serial", f"file:{console}", "-monitor", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.started = time.monotonic()

    def text(self) -> str:
        return self.console.read_text(errors="replace").replace("\r", "") if self.console.exists() else ""

    def wait_for(self, marker: str, timeout_s: float) -> float:
        """Seconds from start until ``marker`` shows on the console (AssertionError on timeout or exit)."""
        deadline = time.monotonic() + timeout_s
        while marker not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} on the console; its end:\n{self.text()[-4000:]}")
            time.sleep(POLL_S)
        return time.monotonic() - self.started

    def pull_plug(self) -> float:
        """Power cut, as an installer does once the console shows what it needs (the guest synced)."""
        self.proc.kill()
        self.proc.wait()
        return time.monotonic() - self.started

    def wait_exit(self, timeout_s: float) -> float:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the guest did not power off; console end:\n{self.text()[-4000:]}") from None
        return time.monotonic() - self.started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
