"""Personal fields: encrypted at sealing, fingerprinted for dedupe, revealed only on request.

The contract marks each field that may carry personal data (``x-personal`` in the JSON Schemas,
``PERSONAL_FIELDS`` here). At sealing, each such field that has a value is replaced in the body by a
*sealed field*::

    {"$enc": "A256GCM", "kid": <customer's key id>, "iv": <base64 96-bit nonce>,
     "ct": <base64 AES-256-GCM ciphertext and tag>, "mac": <base64 128-bit HMAC-SHA256>}

- ``ct`` is the UTF-8 text encrypted with the customer's data key under a fresh random nonce, with
  ``event_id NUL path`` as associated data: a ciphertext moved to another event or field does not
  decrypt.
- ``mac`` is HMAC-SHA256 truncated to its first 128 bits, under a key derived from the data key
  (HKDF), of ``event_id NUL path NUL text``. It is what deduplication compares: the **dedupe
  digest** of a body is the SHA-256 of its canonical JSON with the random members (``ct``, ``iv``)
  left out of every sealed field. A redelivered event (same id, same text) has the same digest;
  one whose text differs does not; and the digest is computed from the stored bytes alone, so
  ``cxl verify`` checks it without any key. Once the key is
  destroyed the mac cannot be recomputed, so it confirms no guess.

The seal hash covers the body with its sealed fields: destroying a key changes no stored byte, so
every chain verifies the same before and after an erasure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidTag

from ledger.canonical import canonical_encoder, canonical_json
from ledger.contract import PERSONAL_FIELDS
from ledger.errors import KeyStoreError
from ledger.keys import KeyStore

ALGORITHM = "A256GCM"
NONCE_BYTES = 12
MAC_BYTES = 16
_RANDOM_MEMBERS = ("ct", "iv")
# In canonical bytes a sealed field is {"$enc":…,"ct":"<b64>","iv":"<b64>","kid":…,"mac":…} (keys
# sorted); a quote inside any string is escaped, so this matches only those two members.
_RANDOM_BYTES = re.compile(rb'"ct":"[A-Za-z0-9+/=]*","iv":"[A-Za-z0-9+/=]*",')
SEALED_MARK = "$enc"
SEALED_FIELD_MARK = b'"$enc":"A256GCM"'
"""Bytes found in the stored state of every event holding a sealed field, and in no other."""
ERASED = "[erased]"


def is_sealed_field(value: Any) -> bool:
    return type(value) is dict and value.get(SEALED_MARK) == ALGORITHM


def _aad(event_id: str, path: str) -> bytes:
    return f"{event_id}\x00{path}".encode()


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _fingerprint(value: Any) -> Any:
    if is_sealed_field(value):
        return {k: v for k, v in value.items() if k not in _RANDOM_MEMBERS}
    return value


def dedupe_digest(body: dict[str, Any]) -> str:
    """The content fingerprint deduplication compares (see the module docstring); equal to the
    SHA-256 of the canonical body when the body holds no sealed field."""
    data = body.get("data")
    if type(data) is dict and any(is_sealed_field(v) for v in data.values()):
        body = {**body, "data": {k: _fingerprint(v) for k, v in data.items()}}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class PersonalCipher:
    """Seals the personal fields of events with their customers' data keys (``KeyStore``)."""

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def erased_among(self, customer_ids: Iterable[str]) -> set[str]:
        """Look up the keys of ``customer_ids`` (creating none); those that were erased."""
        wanted = set(customer_ids)
        found = self.keys.keys_for(wanted, create=False)
        return {c for c in wanted - found.keys() if self.keys.is_erased(c)}

    def provide(self, streams: dict[str, str | None]) -> None:
        """Make sure each customer about to seal a personal value has its data key, committed in
        the key store before the ledger commits. ``streams`` maps each such customer to the key
        id its stream was already sealed with (None for none): a key is created only for a
        stream that never had one, and a stream whose key the key store does not hold (another
        key store, or one edited) is a ``KeyStoreError`` rather than a second key."""
        keys = self.keys
        new = [c for c, kid in streams.items() if kid is None and keys.held(c) is None]
        if new:
            keys.keys_for(new)
        for customer_id, kid in streams.items():
            self.check_stream(customer_id, kid)

    def check_stream(self, customer_id: str, kid: str | None) -> None:
        """``KeyStoreError`` unless the key store holds key ``kid`` for ``customer_id`` or has
        erased them (nothing to check when the stream holds no sealed field: ``kid`` None)."""
        keys = self.keys
        held = keys.held(customer_id)  # the hot path: every sealing batch, one dict lookup
        if kid is None or (held is not None and held.kid == kid):
            return
        key = held or keys.keys_for([customer_id], create=False).get(customer_id)
        if (key.kid == kid) if key is not None else keys.is_erased(customer_id):
            return
        found = "no key" if key is None else f"key {key.kid}"
        raise KeyStoreError(
            f"customer {customer_id!r} was sealed with data key {kid}, but the key store "
            f"{keys.path} holds {found} for them and no erasure: CXL_KEY_STORE names another "
            "ledger's key store, or the key store was edited"
        )

    @staticmethod
    def has_personal_value(body: dict[str, Any]) -> bool:
        data = body["data"]
        return any(data.get(n) is not None for n in PERSONAL_FIELDS.get(body["type"], ()))

    def seal_fields(
        self,
        body: dict[str, Any],
        encode: Callable[[Any], bytes] | None = None,
        plain: bytes | None = None,
    ) -> tuple[bytes, str | None]:
        """The canonical bytes of ``body`` with its personal fields sealed, and its dedupe digest
        (None when the body holds no personal value: then it is the digest of those bytes).
        ``encode`` and ``plain`` are the body's encoder and canonical bytes when already known
        (``ValidEvent``): a body without personal values is then not encoded again."""
        encode = encode or canonical_encoder(body)
        data = body["data"]
        present = [n for n in PERSONAL_FIELDS.get(body["type"], ()) if data.get(n) is not None]
        if not present:
            return (encode(body) if plain is None else plain), None
        key = self.keys.cached(body["customer_id"])
        event_id = body["event_id"]
        sealed_data = dict(data)
        aead = key.aead
        nonces = os.urandom(NONCE_BYTES * len(present))
        for number, name in enumerate(present):
            aad = _aad(event_id, f"data.{name}")
            text = data[name].encode("utf-8")
            nonce = nonces[number * NONCE_BYTES : (number + 1) * NONCE_BYTES]
            mac = hmac.digest(key.mac_key, aad + b"\x00" + text, "sha256")[:MAC_BYTES]
            sealed_data[name] = {
                SEALED_MARK: ALGORITHM,
                "kid": key.kid,
                "iv": _b64(nonce),
                "ct": _b64(aead.encrypt(nonce, text, aad)),
                "mac": _b64(mac),
            }
        sealed = encode({**body, "data": sealed_data})
        return sealed, hashlib.sha256(_RANDOM_BYTES.sub(b"", sealed)).hexdigest()


def reveal(body: dict[str, Any], keys: KeyStore | None) -> tuple[dict[str, Any], list[str]]:
    """``body`` with its sealed fields decrypted, and the paths of those that are erased.

    An erased field reads as ``ERASED``; ``keys`` None reads every sealed field as erased (the
    ledger holds the customer's ``customer.erased``: a key store restored from a backup older than
    the erasure must not bring the text back). A sealed field whose ciphertext does not decrypt
    with its key (altered, or moved from another event) raises ``KeyStoreError`` — never garbage.
    """
    data = body.get("data")
    if type(data) is not dict or not any(is_sealed_field(v) for v in data.values()):
        return body, []
    erased: list[str] = []
    revealed = dict(data)
    for name, value in data.items():
        if not is_sealed_field(value):
            continue
        path = f"data.{name}"
        try:
            kid, nonce, ciphertext = value["kid"], value["iv"], value["ct"]
        except KeyError as exc:
            raise KeyStoreError(
                f"event {body.get('event_id')} {path} is not a sealed field (no {exc})"
            ) from None
        key = None if keys is None else keys.key(str(kid))
        if key is None:
            revealed[name] = ERASED
            erased.append(path)
            continue
        try:
            plain = key.aead.decrypt(
                base64.b64decode(nonce, validate=True),
                base64.b64decode(ciphertext, validate=True),
                _aad(str(body["event_id"]), path),
            )
        except (InvalidTag, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(
                f"event {body.get('event_id')} {path} does not decrypt with its key "
                f"{value.get('kid')} (the stored ciphertext was altered)"
            ) from exc
        revealed[name] = plain.decode("utf-8")
    return {**body, "data": revealed}, erased
