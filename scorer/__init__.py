"""ocsf-anomaly: score OCSF security events for anomalies and enrich them in place."""

__version__ = "0.1.0"
