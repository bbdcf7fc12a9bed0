"""ikev2: an IKEv2 (RFC 7296) key-exchange daemon with a sans-IO engine."""

__version__ = "0.1.0"
