"""Reading WAV audio for the detector: PCM 16/24/32-bit or float, one channel out of many.

Decoding is libsndfile's (through ``soundfile``); this module only picks the channel, keeps
16-bit PCM as int16 (the detector's exact integer path) and turns every way a file can be
wrong into one :class:`WavError` line.
"""
from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf

WAV_FORMATS = ("WAV", "WAVEX", "RF64")
INT16_SUBTYPE = "PCM_16"
BLOCK_FRAMES = 65536


class WavError(ValueError):
    """The file is not usable audio: not a WAV, empty, or lacking the channel asked for."""


@dataclasses.dataclass(frozen=True)
class WavInfo:
    path: str
    rate_hz: int
    channels: int
    frames: int
    subtype: str


def wav_info(path: str | os.PathLike, channel: int = 0) -> WavInfo:
    """Checks that ``path`` is a non-empty WAV file having ``channel`` (0 = first).

    Raises FileNotFoundError for a missing file and WavError for anything else wrong.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    try:
        info = sf.info(path)
    except sf.SoundFileError:
        raise WavError(f"{path}: not a WAV file (libsndfile cannot read it)") from None
    if info.format not in WAV_FORMATS:
        raise WavError(f"{path}: not a WAV file ({info.format_info})")
    if info.frames <= 0:
        raise WavError(f"{path}: empty (no audio frames)")
    if not 0 <= channel < info.channels:
        raise WavError(f"{path}: no channel {channel}; the file has {info.channels} (0..{info.channels - 1})")
    return WavInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.subtype)


def iter_channel(info: WavInfo, channel: int = 0, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Yields one channel in blocks: int16 for 16-bit PCM, else float32 in [-1, 1]."""
    dtype = "int16" if info.subtype == INT16_SUBTYPE else "float32"
    with sf.SoundFile(info.path) as f:
        for block in f.blocks(blocksize=block_frames, dtype=dtype, always_2d=True):
            yield np.ascontiguousarray(block[:, channel])


def read_channel(path: str | os.PathLike, channel: int = 0) -> tuple[np.ndarray, int]:
    """The whole channel as one array (dtype as :func:`iter_channel`) and its rate in Hz."""
    info = wav_info(path, channel)
    return np.concatenate(list(iter_channel(info, channel))), info.rate_hz
