"""The asyncio service around the engine: UDP 500/4500, config, control socket, logs."""
