"""The simulator: synthetic gunfire, confounders and noise over a virtual sensor array.

Public API::

    scn = simulator.scenario.load("city")                   # a TOML file or a library name
    simulator.render.render(scn, "out/", sensor_ids=None, continuous=False, t_range=None,
                            dtype="int16", progress=True)   # WAV clips, clips.csv, sensors.csv, truth
    pulses, labels = simulator.fleet.pulses(scn)            # pulse-level, thousands of sensors
    simulator.score.score(incidents, scn.truth(), scn.array.area_m2(), scn.duration_s,
                          scn.array.origin)                 # detection, error, rounds, order, false alerts

Modules: ``sources`` (muzzle blasts, cracks, confounders), ``propagation`` (ISO 9613-1,
images, NLOS, echoes, noise), ``sensors`` (microphone, ADC clock, PPS, GPS, glitches),
``arrays`` and ``scenario`` (layouts, TOML scenarios in ``scenarios/``), ``render``,
``fleet``, ``score``; ``cli_sim`` is ``earwitness sim``.
"""
