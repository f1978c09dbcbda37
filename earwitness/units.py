"""Units and physical constants the node, the server and the simulator share.

Times are integer nanoseconds since the Unix epoch, UTC (``t_ns``); distances metres.
"""
from __future__ import annotations

from typing import overload

import numpy as np
from numpy.typing import ArrayLike

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
M_PER_MILE = 1609.344
SQ_MI_M2 = M_PER_MILE**2
KELVIN_OFFSET = 273.15
SOUND_COEFF = 20.03  # m/s per sqrt(K), dry air (Calhoun et al., TN098 eq. 8)
# Median absolute deviation to the standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826


@overload
def speed_of_sound(temperature_c: float) -> float: ...
@overload
def speed_of_sound(temperature_c: np.ndarray) -> np.ndarray: ...
@overload
def speed_of_sound(temperature_c: ArrayLike) -> float | np.ndarray: ...


def speed_of_sound(temperature_c: ArrayLike) -> float | np.ndarray:
    """Speed of sound in dry air, m/s: c = 20.03 sqrt(T + 273.15) (TN098 eq. 8).

    A float in, a float out; an array in, an array out.
    """
    c_m_s = SOUND_COEFF * np.sqrt(np.asarray(temperature_c, dtype=float) + KELVIN_OFFSET)
    return float(c_m_s) if c_m_s.ndim == 0 else c_m_s
