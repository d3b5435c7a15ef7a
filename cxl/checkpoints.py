"""``cxl checkpoint`` and ``cxl proof``, and the checkpoint half of ``cxl verify``: what an auditor
keeps, and what proves the ledger against it."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from cxl.analytics import protected, settings_of
from cxl.output import out
from cxl.store_access import open_store
from ledger.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    open_note,
    parse_verifier_key,
    verifier_key,
)
from ledger.errors import CheckpointError, ConfigError
from ledger.proofs import b64, inclusion_proof, signed_checkpoint
from ledger.settings import Settings
from ledger.store import LedgerStore
from projections.targets import (
    refuse_protected,
    require_directory,
    require_regular_or_absent,
)

_NOTE_LIMIT = 64 * 1024

CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint", help="A signed checkpoint file (`cxl checkpoint`) to prove against."
    ),
]
PublicKeyOption = Annotated[
    str | None,
    typer.Option(
        "--public-key",
        help="Verifier key (name+id+key), or a file holding one; default: the public half of "
        "CXL_CHECKPOINT_KEY.",
    ),
]


def read_checkpoint(
    settings: Settings, store: LedgerStore, path: Path, public_key: str | None
) -> tuple[Checkpoint, str]:
    """The checkpoint in ``path`` (and its text, read once) once its signature is checked with
    ``public_key`` (or the ledger's own signing key); ``CheckpointError`` or ``ConfigError``
    naming what is wrong."""
    text = _read_small(path, "--checkpoint")
    if public_key is None:
        # The note's own origin names the key: a checkpoint of another ledger signed with this
        # key then verifies, and is refused for what it is (another ledger's), not as forged.
        signer = CheckpointSigner(settings.checkpoint_key_path, create=False)
        verifier = signer.verifier_key(text.split("\n", 1)[0] or store.origin)
    elif "+" in public_key:
        verifier = public_key
    else:
        verifier = _read_small(Path(public_key), "--public-key")
    try:
        parse_verifier_key(verifier)
    except CheckpointError as exc:
        raise CheckpointError(f"--public-key: {exc}") from None
    try:
        return open_note(text, verifier), text
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _read_small(path: Path, flag: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{flag} {path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(_NOTE_LIMIT + 1)
    if len(raw) > _NOTE_LIMIT:
        raise CheckpointError(f"{flag} {path}: larger than {_NOTE_LIMIT:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{flag} {path}: not UTF-8 text") from None


def _write_note(target: Path, note: str, *, force: bool) -> None:
    """Write a checkpoint to ``target``; an existing file is evidence, kept unless it holds the
    same checkpoint or ``force`` is given."""
    require_regular_or_absent(target)
    if target.is_file() and not force and target.read_bytes() != note.encode():
        raise ConfigError(
            f"--to {target} exists and holds another checkpoint; keep it (it is evidence): "
            "choose another path, or pass --force"
        )
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("x", encoding="utf-8") as handle:
            handle.write(note)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"--to {target}: {exc.strerror or exc}") from exc


def register(app: typer.Typer) -> None:
    @app.command()
    def checkpoint(
        ctx: typer.Context,
        to: Annotated[
            Path | None,
            typer.Option(
                "--to", help="File to write; default HOME/checkpoints/checkpoint-<size>.txt."
            ),
        ] = None,
        key: Annotated[
            Path | None,
            typer.Option("--key", help="Signing key to use instead of CXL_CHECKPOINT_KEY."),
        ] = None,
        public_key: Annotated[
            bool, typer.Option("--public-key", help="Also print the verifier key.")
        ] = False,
        force: Annotated[
            bool, typer.Option(help="Replace a file at --to that holds another checkpoint.")
        ] = False,
    ) -> None:
        """Sign a checkpoint of the ledger (size and Merkle root); its path is the last line."""
        settings = settings_of(ctx)
        if to is not None:
            refuse_protected(to, [*protected(settings), *([key] if key else [])])
            require_directory(to.parent)
        # Only the configured key is created on first use: a mistyped --key is an error, never
        # a new key that would sign checkpoints nobody can check.
        signer = (
            CheckpointSigner(key, create=False)
            if key is not None
            else CheckpointSigner(settings.checkpoint_key_path)
        )
        with open_store(settings, read_only=True) as store:
            point, note = signed_checkpoint(store, signer)
        target = to or settings.home / "checkpoints" / f"checkpoint-{point.size}.txt"
        _write_note(target, note, force=force)
        out.print(f"checkpoint of {point.size:,} events, root {b64(point.root)}")
        if public_key:
            out.print(verifier_key(point.origin, signer.public))
        out.print(str(target))

    @app.command()
    def proof(
        ctx: typer.Context,
        event_id: Annotated[str, typer.Argument(help="The sealed event to prove.")],
        checkpoint_file: CheckpointOption = None,
        public_key: PublicKeyOption = None,
    ) -> None:
        """Print the inclusion proof of a sealed event (JSON), in a checkpoint's tree or today's."""
        settings = settings_of(ctx)
        if public_key is not None and checkpoint_file is None:
            raise ConfigError("--public-key checks a --checkpoint: give one")
        with open_store(settings, read_only=True) as store:
            point, text = (
                (None, None)
                if checkpoint_file is None
                else read_checkpoint(settings, store, checkpoint_file, public_key)
            )
            result = inclusion_proof(store, event_id, point)
        if text is not None:
            result["checkpoint"] = text
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
