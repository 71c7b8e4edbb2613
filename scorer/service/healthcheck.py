"""The container image's health check: ``GET /healthz`` on this host, on the port and in the scheme
``serve`` answers with the same settings (HTTPS once a certificate is set), exit status 0 when it
answers 200, 1 otherwise. A check written as a plain ``http://127.0.0.1:8080`` made a scorer serving
HTTPS, or on another port, unhealthy, and every service waiting on it never started.

    python3 -m scorer.service.healthcheck      # the Dockerfile's HEALTHCHECK
"""

from __future__ import annotations

import ssl
import sys
import urllib.request

from scorer.settings import Settings, SettingsError, service_url

TIMEOUT_SECONDS = 2.0


def url(settings: Settings) -> str:
    """Where this host's serving processes answer ``/healthz``."""
    return service_url(settings, local=True) + "/healthz"


def main() -> int:
    try:
        settings = Settings.load(None)
    except SettingsError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    context = None
    if settings.tls_cert_file is not None:  # its own certificate, on this host: what is checked is
        context = ssl.create_default_context()  # that it answers, not who it is
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:  # an http(s) URL made above, never the user's
        with urllib.request.urlopen(url(settings), timeout=TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url(settings)}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
