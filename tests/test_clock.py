"""Clock model against known truth: an ADC with a rate error, PPS on a second channel (real
C edge finder), impulses at known UTC times."""
import numpy as np
import pytest

from earwitness.units import NS_PER_S
from edge.clock import ClockModel, ClockUnavailable
from edge.pps import AudioPps
from simulator.pps import FS_HZ, Adc, pps_channel

T0_S = 1_790_000_000.371          # true UTC of sample 0 (not a whole second)


def blocks(n, rng, lo=64, hi=4096):
    i = 0
    while i < n:
        j = min(n, i + int(rng.integers(lo, hi)))
        yield i, j
        i = j


def run_live(adc, sig, impulses_s, model, rng, gaps=()):
    """Streams the PPS channel block by block like a node; each impulse is timestamped as
    soon as the block holding it has been processed (only past edges known).  Returns
    (errors_ns, uncertainties_ns) in impulse order."""
    finder = AudioPps(FS_HZ)
    want = np.sort(np.asarray(impulses_s))
    at = adc.sample_at(want)
    err, unc = np.zeros(want.size), np.zeros(want.size)
    done = 0
    for i, j in blocks(sig.samples.size, rng):
        for e in finder.process(sig.samples[i:j]):
            model.add_edge(e)
        while done < want.size and at[done] < j:
            t_ns, u_ns = model.to_utc(at[done])
            err[done] = t_ns - want[done] * NS_PER_S
            unc[done] = u_ns
            done += 1
    return err, unc


def spread_p99(err):
    return float(np.percentile(np.abs(err - np.median(err)), 99))


@pytest.mark.parametrize("ppm", [50.0, -50.0])
def test_pps_audio_meets_accuracy(ppm):
    rng = np.random.default_rng(1)
    adc = Adc(t0_s=T0_S, ppm=ppm)
    n = FS_HZ * 90
    sig = pps_channel(adc, n, highpass_hz=20.0, noise_rms=0.005, seed=2)
    model = ClockModel(FS_HZ)
    # --start-utc 0.3 s off: edges are rounded to the nearest second
    model.add_utc_hint(0, int((T0_S + 0.3) * NS_PER_S))
    impulses = rng.uniform(T0_S + 3, T0_S + 88, 400)
    err, unc = run_live(adc, sig, impulses, model, rng)
    print(f"\nppm {ppm:+}: median {np.median(err) / 1e3:.2f} us, "
          f"spread p99 {spread_p99(err) / 1e3:.2f} us, max unc {unc.max() / 1e3:.1f} us")
    assert spread_p99(err) <= 10_000
    assert abs(np.median(err)) <= 100_000
    assert (np.abs(err) <= unc).all()
    st = model.status()
    assert st["timing"] == "pps-audio" and st["locked"] and st["labelled"]
    assert st["rate_error_ppm"] == pytest.approx(ppm, abs=0.05)


def test_strongly_ac_coupled_inverted_pps():
    """A 1 kHz coupling corner makes the pulse a spike; the pulse is inverted too."""
    rng = np.random.default_rng(3)
    adc = Adc(t0_s=T0_S, ppm=-37.0)
    sig = pps_channel(adc, FS_HZ * 40, highpass_hz=1000.0, polarity=-1, noise_rms=0.003)
    model = ClockModel(FS_HZ)
    model.add_utc_hint(FS_HZ * 5, int((T0_S + 5 - 0.35) * NS_PER_S))
    err, unc = run_live(adc, sig, rng.uniform(T0_S + 3, T0_S + 39, 200), model, rng)
    assert spread_p99(err) <= 10_000 and abs(np.median(err)) <= 100_000
    assert (np.abs(err) <= unc).all()


def test_holdover_60_s_without_pps():
    rng = np.random.default_rng(4)
    # the ADC's rate drifts (warming box) while the PPS is gone
    adc = Adc(t0_s=T0_S, ppm=50.0, drift_ppm_per_s=0.001)
    gap = (T0_S + 70, T0_S + 130)
    sig = pps_channel(adc, FS_HZ * 150, missing=[gap], seed=5)
    model = ClockModel(FS_HZ)
    model.add_utc_hint(0, int(T0_S * NS_PER_S))
    in_gap = np.linspace(gap[0] + 0.5, gap[1] - 0.01, 60)
    err, unc = run_live(adc, sig, in_gap, model, rng)
    print(f"\nholdover: max |error| {np.abs(err).max() / 1e3:.2f} us, "
          f"uncertainty {unc[0] / 1e3:.1f} -> {unc[-1] / 1e3:.1f} us")
    assert np.abs(err).max() <= 50_000
    assert (np.abs(err) <= unc).all()
    assert unc[-1] > 2 * unc[0], "uncertainty must grow in holdover"
    assert model.status()["steps"] == 0


def run_with_drop(adc, seconds, drop_at, drop_n, report, seed):
    """Streams a PPS channel from which ``drop_n`` samples vanish at ``drop_at``, telling
    the model (``report``) or not; returns the model."""
    rng = np.random.default_rng(seed)
    sig = pps_channel(adc, FS_HZ * seconds, seed=seed + 1)
    stream = np.concatenate([sig.samples[:drop_at], sig.samples[drop_at + drop_n:]])
    model = ClockModel(FS_HZ)
    model.add_utc_hint(0, int(T0_S * NS_PER_S))
    finder = AudioPps(FS_HZ)
    for i, j in blocks(stream.size, rng):
        if report and i <= drop_at < j:
            model.report_gap(drop_at, drop_n)
        for e in finder.process(stream[i:j]):
            model.add_edge(e)
    return model


def test_unreported_dropped_block_is_detected_as_step():
    """480 samples vanish from the stream unannounced: the clock sees a step, opens a new
    segment, and keeps the second numbering."""
    adc = Adc(t0_s=T0_S, ppm=20.0)
    drop_n = 480
    model = run_with_drop(adc, 40, FS_HZ * 20 + 123, drop_n, report=False, seed=6)
    assert model.status()["steps"] == 1
    t = np.linspace(T0_S + 25, T0_S + 39, 30)
    delivered = adc.sample_at(t) - drop_n
    err = np.array([model.to_utc(s)[0] for s in delivered]) - t * NS_PER_S
    assert np.abs(err).max() <= 10_000


def test_reported_gap_keeps_continuity():
    adc = Adc(t0_s=T0_S, ppm=-20.0)
    drop_at, drop_n = FS_HZ * 12 + 77, 4096
    model = run_with_drop(adc, 30, drop_at, drop_n, report=True, seed=8)
    st = model.status()
    assert st["steps"] == 0 and st["gaps"] == 1
    t = np.linspace(T0_S + 2, T0_S + 29, 50)
    s = adc.sample_at(t)
    delivered = np.where(s >= drop_at + drop_n, s - drop_n, s)
    err = np.array([model.to_utc(x)[0] for x in delivered]) - t * NS_PER_S
    assert np.abs(err).max() <= 10_000


def test_glitch_edges_are_rejected():
    adc = Adc(t0_s=T0_S, ppm=10.0)
    model = ClockModel(FS_HZ)
    model.add_utc_hint(0, int(T0_S * NS_PER_S))
    seconds = np.arange(np.ceil(T0_S), T0_S + 30)
    for k, sec in enumerate(seconds):
        model.add_edge(float(adc.sample_at(sec)))
        if k in (5, 17):
            model.add_edge(float(adc.sample_at(sec + 0.37)))   # a glitch between pulses
    st = model.status()
    assert st["outliers"] == 2 and st["steps"] == 0
    t = T0_S + 20.25
    assert abs(model.to_utc(adc.sample_at(t))[0] - t * NS_PER_S) < 1_000


@pytest.mark.parametrize("delay_s", [0.08, 0.45, 0.65, -0.12, -0.25])
def test_nmea_labels_seconds_whichever_order(delay_s):
    """The sentence naming second T arrives ``delay_s`` after (or, negative, before) the
    pulse marking T; no other source of UTC."""
    adc = Adc(t0_s=T0_S, ppm=-45.0)
    model = ClockModel(FS_HZ)
    seconds = np.arange(np.ceil(T0_S) + 1, T0_S + 20)
    events = [(sec, "edge") for sec in seconds] + [(sec + delay_s, "nmea") for sec in seconds]
    for t, kind in sorted(events):
        if kind == "edge":
            model.add_edge(float(adc.sample_at(t)))
        else:
            model.add_nmea_time(float(adc.sample_at(t)), int(round(t - delay_s)))
    t = T0_S + 10.618
    t_ns, unc = model.to_utc(adc.sample_at(t))
    assert abs(t_ns - t * NS_PER_S) < 1_000 and unc < 20_000


def test_kernel_pps_with_jittered_callbacks():
    """Kernel PPS timestamps on a host clock 3.2 ms off UTC; audio callbacks every 1024
    samples, 5 ms latency (known), jittered by +-2 ms."""
    rng = np.random.default_rng(10)
    adc = Adc(t0_s=T0_S, ppm=42.0)
    host_off_ns = 3_200_000
    latency_ns = 5_000_000
    model = ClockModel(FS_HZ, kernel_latency_ns=latency_ns)
    block = 1024
    n = FS_HZ * 60
    next_sec = np.ceil(T0_S)
    want = np.sort(rng.uniform(T0_S + 20, T0_S + 59, 200))
    err, unc, done = [], [], 0
    for end in range(block, n, block):
        t_end = float(adc.time_at(end))
        host = int(t_end * NS_PER_S) + host_off_ns + latency_ns + int(rng.uniform(-2e6, 2e6))
        model.add_block(end, host)
        while next_sec <= t_end - 0.004:      # the assert was read a little after the pulse
            model.add_kernel_pps(int(next_sec * NS_PER_S) + host_off_ns + int(rng.normal(0, 2000)))
            next_sec += 1
        while done < want.size and adc.sample_at(want[done]) < end:
            t_ns, u_ns = model.to_utc(adc.sample_at(want[done]))
            err.append(t_ns - want[done] * NS_PER_S)
            unc.append(u_ns)
            done += 1
    err, unc = np.array(err), np.array(unc)
    print(f"\nkernel PPS: max |error| {np.abs(err).max() / 1e3:.0f} us, "
          f"uncertainty {np.median(unc) / 1e3:.0f} us")
    assert np.abs(err).max() <= 1_000_000
    assert (np.abs(err) <= unc).all()
    assert np.median(unc) <= 2_000_000
    st = model.status()
    assert st["timing"] == "pps-kernel" and st["locked"]
    assert st["system_offset_ns"] == pytest.approx(host_off_ns, abs=300_000)


def test_system_clock_fallback_is_flagged_degraded():
    adc = Adc(t0_s=T0_S, ppm=0.0)
    model = ClockModel(FS_HZ)
    with pytest.raises(ClockUnavailable):
        model.to_utc(100)
    for end in range(1024, FS_HZ * 5, 1024):
        model.add_block(end, int(adc.time_at(end) * NS_PER_S))
    st = model.stamp(FS_HZ * 4)
    assert st.timing == "system" and model.timing == "system"
    assert abs(st.t_ns - adc.time_at(FS_HZ * 4) * NS_PER_S) < 1_000_000
    assert st.t_unc_ns >= 10_000_000
    assert not model.status()["locked"]


def test_audio_restart_relabels_from_nmea_and_is_honest_meanwhile():
    """The audio stream restarts (unknown number of samples lost); NMEA names the seconds
    again, placed on the stream through the callback times."""
    rng = np.random.default_rng(12)
    adc = Adc(t0_s=T0_S, ppm=-30.0)
    sig = pps_channel(adc, FS_HZ * 40, seed=13)
    lost = 31_337
    restart = FS_HZ * 20
    stream = np.concatenate([sig.samples[:restart], sig.samples[restart + lost:]])
    model = ClockModel(FS_HZ)
    finder = AudioPps(FS_HZ)
    nmea_next = np.ceil(T0_S)

    def true_s(delivered):
        return adc.time_at(delivered + (lost if delivered >= restart else 0))

    checked = []
    for i, j in blocks(stream.size, rng, 1024, 1025):
        if i <= restart < j:
            model.report_gap(restart, None)
        model.add_block(j, int(true_s(j) * NS_PER_S) + int(rng.uniform(-2e6, 2e6)))
        for e in finder.process(stream[i:j]):
            model.add_edge(e)
        while nmea_next + 0.3 <= true_s(j):           # sentence 0.3 s after its pulse
            model.add_nmea_fix_time(int((nmea_next + 0.3) * NS_PER_S), int(nmea_next * NS_PER_S))
            nmea_next += 1
        if i <= restart + FS_HZ * 0.5 < j:            # just after the restart: no PPS yet
            st = model.stamp(j - 1)
            checked.append(st)
            assert abs(st.t_ns - true_s(j - 1) * NS_PER_S) <= st.t_unc_ns
    assert checked and checked[0].timing == "system"
    t = np.linspace(T0_S + 25, T0_S + 39, 20)
    delivered = adc.sample_at(t) - lost
    st = [model.stamp(s) for s in delivered]
    err = np.array([s.t_ns for s in st]) - t * NS_PER_S
    assert all(s.timing == "pps-audio" for s in st)
    assert np.abs(err).max() <= 10_000
    assert model.status()["gaps"] == 1
