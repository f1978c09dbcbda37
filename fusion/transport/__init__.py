"""Transports: how the server's messages travel (MQTT to mosquitto today).

The top layer of the server: it may import every layer below, none imports it.
"""
from __future__ import annotations

import functools

from fusion.server.service import FusionConfig, FusionService
from fusion.transport.mqttlink import MqttLink


def mqtt_service(config: FusionConfig) -> FusionService:
    """A fusion worker whose pulses and alerts go through the MQTT broker at ``config.broker``."""
    return FusionService(config, functools.partial(MqttLink, config.broker, tls=config.tls))
