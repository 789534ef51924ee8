"""Checkpoints: the whole training state of a cell after an epoch, so a killed run resumes.

File format: one line with the SHA-256 of the payload, then the payload (torch.save bytes).
Written atomically (temporary file, fsync, rename). A checkpoint whose checksum fails is set
aside (records.set_aside: a unique *.corrupt name, one line) and the cell starts over: a damaged
file is never trusted. A resume says so in one line.

The state also counts the attempts and their wall time up to each attempt's last save, so that a
record made over several attempts (a killed or requeued job) states its whole cost (`earlier`).
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import torch

from . import records
from .notices import notice


class Checkpoint:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.started = time.perf_counter()
        # The attempts before this one (from a loaded checkpoint): count, wall time, epochs done.
        self.earlier = {"attempts": 0, "wall_s": 0.0, "epoch": 0}

    def save(self, state: dict) -> None:
        state = {**state, "attempts": {"count": self.earlier["attempts"] + 1,
                                       "wall_s": self.earlier["wall_s"] + time.perf_counter() - self.started}}
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        records.atomic_write_bytes(self.path, hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)

    def load(self, map_location=None) -> dict | None:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        digest, _, payload = blob.partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            records.set_aside(self.path, "the cell starts over")
            return None
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
        done = state.get("attempts", {"count": 1, "wall_s": 0.0})
        self.earlier = {"attempts": done["count"], "wall_s": done["wall_s"], "epoch": len(state.get("history", []))}
        notice(f"resuming {self.path.stem} from epoch {self.earlier['epoch']} ({self.path.name}, "
               f"attempt {done['count'] + 1})")
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
