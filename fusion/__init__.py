"""The fusion server: pulses from many sensors in, located incidents and alerts out."""
