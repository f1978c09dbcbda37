"""Ed25519 signing keys (nodes and the fusion server): made once, kept by their owner, the public half published.

The private key file holds the 32-byte Ed25519 seed in hex (PyNaCl), readable by its owner
only; the public key is written beside it as ``<file>.pub`` (hex) for the server's registry.
"""
from __future__ import annotations

import os
import pathlib

import nacl.signing

KEY_FILE_MODE = 0o600
SEED_LEN = 32


def generate(path: str | os.PathLike[str], *, overwrite: bool = False) -> nacl.signing.VerifyKey:
    """Make a new key pair: the private key at ``path`` (mode 0600), the public at ``path.pub``.

    Refuses to replace an existing key unless ``overwrite``: losing a node's key means
    re-registering it at the server.  Returns the public key.
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(17, "key file exists (refusing to overwrite)", str(path))
    key = nacl.signing.SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(bytes(key).hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    public_path(path).write_text(public_hex(key.verify_key) + "\n")
    return key.verify_key


def public_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """Where :func:`generate` writes the public half of the key at ``path``."""
    path = pathlib.Path(path)
    return path.with_name(path.name + ".pub")


def public_hex(key: nacl.signing.VerifyKey) -> str:
    """The public key as 64 hex characters, the form registries and configs hold."""
    return bytes(key).hex()


def load_signing_key(path: str | os.PathLike[str]) -> nacl.signing.SigningKey:
    """Read a private key written by :func:`generate`; ValueError with the reason if malformed."""
    text = pathlib.Path(path).read_text().strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: not a hex Ed25519 seed") from None
    if len(seed) != SEED_LEN:
        raise ValueError(f"{path}: an Ed25519 seed has {SEED_LEN} bytes, this has {len(seed)}")
    return nacl.signing.SigningKey(seed)


def load_verify_key(path: str | os.PathLike[str]) -> nacl.signing.VerifyKey:
    """Read a public key (64 hex characters) such as ``<key>.pub``."""
    text = pathlib.Path(path).read_text().strip()
    try:
        raw = bytes.fromhex(text)
        return nacl.signing.VerifyKey(raw)
    except (ValueError, TypeError):  # nacl raises its own ValueError subclass
        raise ValueError(f"{path}: not a hex Ed25519 public key") from None
