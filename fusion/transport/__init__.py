"""Transports: how the server's messages travel (MQTT to mosquitto, or a NATS JetStream cluster).

The top layer of the server: it may import every layer below, none imports it.
"""
from __future__ import annotations

import functools

from fusion.server.service import FusionConfig, FusionService
from fusion.transport.mqttlink import MqttLink
from fusion.transport.natslink import NatsLink, is_nats_url


def mqtt_service(config: FusionConfig) -> FusionService:
    """A fusion worker whose pulses and alerts go through the MQTT broker at ``config.broker``."""
    return FusionService(config, functools.partial(MqttLink, config.broker, tls=config.tls))


def nats_service(config: FusionConfig) -> FusionService:
    """A fusion worker on the NATS JetStream cluster at ``config.broker`` (``nats://a,nats://b,...``)."""
    return FusionService(config, functools.partial(NatsLink, config.broker, config.site))


def fusion_service(config: FusionConfig) -> FusionService:
    """The worker on the engine ``config.broker`` names: ``nats://`` a NATS cluster, else an MQTT broker."""
    return nats_service(config) if is_nats_url(config.broker) else mqtt_service(config)
