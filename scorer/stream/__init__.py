"""Streaming scoring: ``ocsf-anomaly stream``, one consumer loop (loop.py) over a source of OCSF
events (Redis Streams or Kafka) that loses nothing on a crash: a batch is read, scored
in-process by the engine, its enriched events, alerts and dead letters written, and only then
acknowledged.

    loop.py           the loop, the model that scores (following the registry's promotions), metrics
    redis_streams.py  Redis Streams: consumer group, own pending entries first, claims of dead
                      consumers' entries, XACK after the writes, trimmed outputs
    kafka.py          Kafka (aiokafka): consumer group, commits after the brokers acknowledged the
                      writes, commit on revoke, outputs keyed by entity
"""
