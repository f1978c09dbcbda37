"""A throwaway certificate authority for TLS tests, made with the openssl command line."""
from __future__ import annotations

import pathlib
import subprocess

DAYS = "2"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: pathlib.Path, clients: tuple[str, ...] = ("client",)) -> dict[str, pathlib.Path]:
    """CA, a server certificate for 127.0.0.1 and client certificates, all signed by the CA.

    Each name in ``clients`` is a certificate's common name; its files are under the keys
    ``NAME_cert`` and ``NAME_key``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", DAYS, "-subj", "/CN=earwitness test CA", cwd=folder)
    subjects = [("server", "subjectAltName=IP:127.0.0.1")] + [(c, "extendedKeyUsage=clientAuth") for c in clients]
    for name, extra in subjects:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=folder)
        (folder / f"{name}.ext").write_text(extra + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", DAYS, "-extfile", f"{name}.ext", cwd=folder)
    files = {"ca": folder / "ca.pem"}
    for name, _ in subjects:
        files[f"{name}_cert"], files[f"{name}_key"] = folder / f"{name}.pem", folder / f"{name}.key"
    return files
