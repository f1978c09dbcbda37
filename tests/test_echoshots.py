"""Located shots that are another's echo (fusion.locator.echoshots)."""
import numpy as np

from earwitness.units import NS_PER_S
from fusion.locator.echoshots import echo_shots

C_M_S = 343.0
ROUND = [f"S{k:02d}" for k in range(19)]


def _shot(t_s, sensors):
    return {"t_ns": int(t_s * NS_PER_S), "sensors": list(sensors)}


def test_a_set_few_of_the_rounds_sensors_heard_is_an_echo_even_within_the_shooter():
    # city_exchange rendered with the wall echoes' directivity: a set 50 ms after the round,
    # 25 m off, heard by 5 sensors of which 1 heard the round; its large error merges it with
    # the round's shooter, so "a lone shot of another shooter" cannot catch it.
    shots = [_shot(0.0, ROUND), _shot(0.05, ["S00", "X1", "X2", "X3", "X4"])]
    enus = np.array([[0.0, 0.0, 0.0], [15.0, 20.0, 0.0]])
    assert echo_shots(shots, enus, np.array([3.0, 40.0]), np.array([0, 0]), C_M_S).tolist() == [False, True]


def test_a_later_round_most_of_the_sensors_heard_is_kept():
    shots = [_shot(0.0, ROUND), _shot(0.15, ROUND[:15])]
    enus = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 0.0]])
    assert echo_shots(shots, enus, np.array([2.0, 2.0]), np.array([0, 0]), C_M_S).tolist() == [False, False]


def test_a_lone_shot_of_another_shooter_close_behind_is_an_echo_and_a_far_one_is_not():
    shots = [_shot(0.0, ROUND), _shot(0.1, ROUND[:12]), _shot(0.35, ROUND[:14])]
    enus = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [45.0, 0.0, 0.0]])
    assert echo_shots(shots, enus, np.full(3, 2.0), np.array([0, 1, 2]), C_M_S).tolist() == [False, True, False]


def test_a_shooter_s_round_after_another_shooter_s_shot_other_sensors_heard_is_kept():
    # city_demo, seed 24: a rifle's rounds placed 20 m apart (two shooters) by two sensor sets; a
    # round after the other set's shot shares few of its sensors and is still a round.
    shots = [_shot(0.0, ROUND[:11]), _shot(0.18, ROUND[7:]), _shot(0.30, ROUND[:10] + ["X1"]), _shot(0.48, ROUND[8:])]
    enus = np.array([[0.0, 0.0, 0.0], [8.0, 20.0, 0.0], [-1.0, 1.0, 0.0], [9.0, 17.0, 0.0]])
    assert not echo_shots(shots, enus, np.full(4, 3.0), np.array([0, 1, 0, 1]), C_M_S).any()


def test_a_later_round_few_sensors_heard_at_the_rounds_place_is_kept_and_elsewhere_is_an_echo():
    # Pittsburgh, two 3-round tests merged 0.1-0.4 s apart: a round heard by 5 of the first round's
    # 14 sensors (and by none other) 2 m from it, within their relative radii (1.6, 1.5 m), is the
    # same gun heard less well. City_demo's park rifle through the audio path: a set heard by 5 of
    # the round's 14 sensors and one more, 5 m off against radii of 3.0 and 1.0 m, is an echo set.
    shots = [_shot(0.0, ROUND[:14]), _shot(0.3, ROUND[:5])]
    same_place = np.array([[0.0, 0.0, 0.0], [1.5, -1.5, 0.0]])
    assert echo_shots(shots, same_place, np.array([1.5, 1.6]), np.array([0, 0]), C_M_S).tolist() == [False, False]
    shots = [_shot(0.0, ROUND[:14]), _shot(0.1, ROUND[:5] + ["X1"])]
    elsewhere = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    assert echo_shots(shots, elsewhere, np.array([1.0, 3.0]), np.array([0, 0]), C_M_S).tolist() == [False, True]
