"""PPS sources: the C edge finder on rendered PPS channels, the kernel PPS API's struct and
error paths."""
import ctypes
import struct

import numpy as np
import pytest

from edge.pps import PPS_FETCH, AudioPps, KernelPps, PpsError, decode_fdata, encode_fetch_request
from simulator.pps import FS_HZ, Adc, pps_channel

T0_S = 1_790_000_000.6


def edges_in_blocks(samples, sizes, **kw):
    finder = AudioPps(FS_HZ, **kw)
    out, i, k = [], 0, 0
    while i < samples.size:
        n = sizes[k % len(sizes)]
        out.append(finder.process(samples[i:i + n]))
        i, k = i + n, k + 1
    return np.concatenate(out), finder


@pytest.mark.parametrize("highpass_hz,polarity", [(0.0, 1), (20.0, -1), (300.0, 1), (2000.0, -1)])
def test_edges_to_a_fraction_of_a_sample(highpass_hz, polarity):
    adc = Adc(t0_s=T0_S, ppm=-50.0)
    sig = pps_channel(adc, FS_HZ * 12, highpass_hz=highpass_hz, polarity=polarity,
                      noise_rms=0.004, seed=1)
    edges, finder = edges_in_blocks(sig.samples, [4096])
    assert finder.polarity == polarity
    assert edges.size == sig.edge_samples.size
    err = edges - sig.edge_samples
    assert np.abs(err).max() < 0.25, err      # samples: 5 us at 48 kHz


def test_block_size_invariance():
    adc = Adc(t0_s=T0_S, ppm=33.0)
    sig = pps_channel(adc, FS_HZ * 6, highpass_hz=50.0, seed=2)
    whole, _ = edges_in_blocks(sig.samples, [sig.samples.size])
    for sizes in ([1, 7, 300], [4096], [48_001, 13]):
        got, _ = edges_in_blocks(sig.samples, sizes)
        np.testing.assert_array_equal(got, whole)


def test_fixed_polarity_takes_that_edge_only():
    adc = Adc(t0_s=T0_S, ppm=0.0)
    sig = pps_channel(adc, FS_HZ * 5, width_s=0.2, seed=3)
    rising, _ = edges_in_blocks(sig.samples, [1000], polarity=1)
    falling, _ = edges_in_blocks(sig.samples, [1000], polarity=-1)
    np.testing.assert_allclose(rising, sig.edge_samples, atol=0.25)
    np.testing.assert_allclose(falling, sig.edge_samples + 0.2 * FS_HZ, atol=0.25)


def test_noise_and_silence_give_no_edges():
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 0.01, FS_HZ * 5).astype(np.float32)
    assert edges_in_blocks(noise, [2048])[0].size == 0
    assert edges_in_blocks(np.zeros(FS_HZ * 2, np.float32), [2048])[0].size == 0


def test_bad_parameters():
    with pytest.raises(ValueError):
        AudioPps(FS_HZ, polarity=2)
    with pytest.raises(ValueError):
        AudioPps(FS_HZ, max_pulse_width_s=0.7)
    with pytest.raises(ValueError):
        AudioPps(0)


def test_kernel_pps_missing_device_is_a_clear_error(tmp_path):
    with pytest.raises(PpsError, match="no PPS device .*pps7"):
        KernelPps(str(tmp_path / "pps7"))


def test_kernel_pps_on_a_non_pps_device_is_a_clear_error():
    with KernelPps("/dev/null") as dev, pytest.raises(PpsError, match="not a PPS device"):
        dev.fetch(0.1)


def test_fdata_layout_and_decoding():
    # struct pps_fdata on 64-bit Linux: kinfo {u32, u32, ktime, ktime, int} + ktime timeout,
    # ktime = {s64 sec, s32 nsec, u32 flags}; 64 bytes with alignment padding.
    raw = struct.pack("=IIqiIqiIi4xqiI", 41, 40, 1_790_000_123, 17_250, 0,
                      1_790_000_122, 100_017_000, 0, 0x1133, 1, 0, 0)
    assert len(raw) == 64
    ev = decode_fdata(raw)
    assert ev.sequence == 41 and ev.clear_sequence == 40
    assert ev.assert_ns == 1_790_000_123_000_017_250
    assert ev.clear_ns == 1_790_000_122_100_017_000
    req = encode_fetch_request(1.25)
    assert struct.unpack_from("=qiI", req, 48) == (1, 250_000_000, 0)
    assert struct.unpack_from("=qiI", encode_fetch_request(None), 48)[2] == 1  # PPS_TIME_INVALID
    with pytest.raises(ValueError):
        decode_fdata(raw[:40])


def test_pps_fetch_ioctl_number():
    # _IOWR('p', 0xa4, struct pps_fdata *): the header encodes the pointer's size
    size = ctypes.sizeof(ctypes.c_void_p)
    assert PPS_FETCH == (3 << 30) | (size << 16) | (0x70 << 8) | 0xA4
    if size == 8:
        assert PPS_FETCH == 0xC00870A4

