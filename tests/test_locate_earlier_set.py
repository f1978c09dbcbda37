"""Of two sets of pulses as large, the one no later at every sensor they share is the direct sound
(fusion/locator/associate.py, earlier_set; issue 14): on the Pittsburgh audio (TN098 supplement,
ShotSpotter Inc., CC BY 4.0) FP2's test_026 had a set of five -- a reflection 0.3 s late at 0681,
later pulses at 2069 and 5137, a noise pulse at 0696 -- that fitted a place 150 m off as well as
the direct sound's five fitted the shooter's, and every round was put there."""
from __future__ import annotations

import pytest

import locator_lopo as lopo

pytestmark = pytest.mark.slow

WITHIN_M = 25.0


def test_direct_set_preferred_to_a_later_one_as_large_on_pittsburgh_test_026(pittsburgh, tmp_path):
    fired, off_m = lopo.audio_offsets_m(pittsburgh, "test_026", tmp_path)
    assert len(off_m) == fired and max(off_m) <= WITHIN_M, off_m
