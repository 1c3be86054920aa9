"""Test support: a real Kafka broker, service processes, topic helpers."""
