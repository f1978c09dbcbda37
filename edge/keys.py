"""Node signing keys: :mod:`earwitness.keys` (shared with the fusion server, which signs its audit log)."""
from earwitness.keys import KEY_FILE_MODE, SEED_LEN, generate, load_signing_key, load_verify_key, public_hex, public_path

__all__ = ["KEY_FILE_MODE", "SEED_LEN", "generate", "load_signing_key", "load_verify_key", "public_hex", "public_path"]
