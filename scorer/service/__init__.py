"""The scoring service: an aiohttp app over the engine (`scorer.detector`)."""
