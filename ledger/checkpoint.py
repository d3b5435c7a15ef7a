"""Signed checkpoints: the ledger's Merkle tree size and root, signed with Ed25519.

The text is a C2SP ``tlog-checkpoint`` carried in a C2SP ``signed-note``::

    cx-ledger/<ledger id>          origin: names this ledger, never another
    <tree size>                    decimal, the number of sealed events covered
    <root hash>                    base64 of the RFC 9162 root of the first <tree size> leaves

    — <key name> <base64(key id ‖ signature)>

The signature is Ed25519 over the note's text (the three lines, each ending in a newline); the key
id is the first 4 bytes of SHA-256(key name ‖ "\\n" ‖ 0x01 ‖ public key) and the verifier key is
written ``<name>+<hex key id>+<base64(0x01 ‖ public key)>``, as Go's ``golang.org/x/mod/sumdb/note``
does. The key name is the origin.

Whoever keeps a copy of a checkpoint can later prove, without trusting the operator, that the
ledger still holds exactly those events (a consistency proof) and that an event is among them (an
inclusion proof) — see ``ledger.merkle``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import CheckpointError
from ledger.private_files import create_private, read_private

ORIGIN_PREFIX = "cx-ledger/"
_ED25519 = b"\x01"
_KEY_FILE_LIMIT = 4096
_SIGNING_KEY = "the checkpoint signing key"


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The public key as a note verifier key: ``name+hexid+base64(0x01 ‖ key)``."""
    encoded = base64.b64encode(_ED25519 + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, public key) of a verifier key; ``CheckpointError`` when it is not one."""
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        expected_id = bytes.fromhex(hex_id)
    except (ValueError, binascii.Error):
        raise CheckpointError(f"not a verifier key (name+id+key): {text.strip()[:80]!r}") from None
    if len(raw) != 33 or raw[:1] != _ED25519 or key_id(name, raw[1:]) != expected_id:
        raise CheckpointError(f"not an Ed25519 verifier key, or its id does not match: {name!r}")
    return name, raw[1:]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


class CheckpointSigner:
    """The Ed25519 key that signs this ledger's checkpoints, kept in a private file (PKCS#8 PEM,
    mode 0600, created on first use unless ``create`` is false)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._key = self._load(create)
        self.public = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def _load(self, create: bool) -> Ed25519PrivateKey:
        pem = read_private(self.path, _KEY_FILE_LIMIT, _SIGNING_KEY, CheckpointError)
        if pem is None:
            if not create:
                raise CheckpointError(
                    f"there is no checkpoint signing key at {self.path} (CXL_CHECKPOINT_KEY)"
                )
            key = Ed25519PrivateKey.generate()
            made = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            if create_private(self.path, made, _SIGNING_KEY, CheckpointError):
                return key
            return self._load(create=False)
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            loaded = None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise CheckpointError(
                f"{self.path} is not an Ed25519 private key (PKCS#8 PEM, unencrypted)"
            )
        return loaded

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of ``checkpoint`` (its key name is the origin)."""
        body = checkpoint.body()
        signature = self._key.sign(body.encode())
        blob = base64.b64encode(key_id(checkpoint.origin, self.public) + signature).decode()
        return f"{body}\n\u2014 {checkpoint.origin} {blob}\n"

    def verifier_key(self, origin: str) -> str:
        return verifier_key(origin, self.public)


def open_note(text: str, verifier: str) -> Checkpoint:
    """The checkpoint of a signed note, once its signature by ``verifier`` (a verifier key) is
    checked; ``CheckpointError`` naming what is wrong otherwise."""
    name, public = parse_verifier_key(verifier)
    body, separator, signatures = text.partition("\n\n")
    if not separator or not body:
        raise CheckpointError("not a signed note (no blank line before the signatures)")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("not a checkpoint (origin, size and root hash lines expected)")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    try:
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise ValueError(size_text)
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("not a checkpoint (bad tree size or root hash line)") from None
    if len(root) != 32:
        raise CheckpointError("not a checkpoint (the root hash is not 32 bytes)")
    wanted = key_id(name, public)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if blob[:4] != wanted:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], body.encode())
        except InvalidSignature:
            raise CheckpointError(f"the signature by {name!r} does not verify") from None
        return Checkpoint(origin, size, root)
    raise CheckpointError(
        f"the checkpoint carries no signature by the key {name!r} (key id {wanted.hex()}): it "
        "was signed by another key"
    )
