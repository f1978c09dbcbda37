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
        sign(folder, folder / f"{name}.csr", folder / f"{name}.pem", extra)
    files = {"ca": folder / "ca.pem"}
    for name, _ in subjects:
        files[f"{name}_cert"], files[f"{name}_key"] = folder / f"{name}.pem", folder / f"{name}.key"
    return files


def sign(ca_folder: pathlib.Path, csr: pathlib.Path, out: pathlib.Path,
         extension: str = "extendedKeyUsage=clientAuth") -> pathlib.Path:
    """Sign the certificate request ``csr`` with the CA made by :func:`make_pki` in ``ca_folder``."""
    csr, out = csr.resolve(), out.resolve()
    ext = out.with_suffix(".ext")
    ext.write_text(extension + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", str(out), "-days", DAYS, "-extfile", str(ext), cwd=ca_folder)
    return out
