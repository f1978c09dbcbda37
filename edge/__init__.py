"""The sensor node: audio in, timestamped pulses out over MQTT."""
