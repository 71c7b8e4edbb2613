"""The compose `splunk` profile's one-shot `splunk-setup` job: points the ocsf_anomaly app at the
scorer and hands it the scorer's API token, through splunkd's REST API, as the app's README says.

Once splunkd answers and the app is installed (the Splunk container installs it from dist/ while it
starts: minutes), it sets ``url`` in the app's ``ocsf_anomaly.conf`` ``[scorer]`` (splunkd writes
it to the app's local/: the default, http://127.0.0.1:8080, is Splunk itself inside its container)
and, when OCSF_ANOMALY_API_TOKEN is set, stores the token in the app's ``storage/passwords``
(realm ``ocsf_anomaly``, name ``scorer_token``; replaced when there is one). Through the API, not a
file mounted into $SPLUNK_HOME: the Splunk image chowns $SPLUNK_HOME as it starts, which a
read-only mount makes fail and a writable one turns onto the checkout's file.

Environment: SPLUNKD_URL (https://splunk:8089), SPLUNK_PASSWORD (the admin's), SCORER_URL
(http://scorer:8080), OCSF_ANOMALY_API_TOKEN (empty: none stored), SPLUNK_SETUP_WAIT_SECONDS (900).
Standard library only: it runs in the scorer's image. The token is never printed.
"""

from __future__ import annotations

import base64
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

APP = "ocsf_anomaly"
REALM, NAME = "ocsf_anomaly", "scorer_token"


def call(splunkd: str, auth: str, path: str, form: dict[str, str] | None = None) -> int:
    """GET (or POST ``form`` to) ``path`` on splunkd: the HTTP status."""
    data = urllib.parse.urlencode({**(form or {}), "output_mode": "json"}).encode() if form else None
    request = urllib.request.Request(splunkd + path, data=data, headers={"Authorization": "Basic " + auth})
    # splunkd's certificate is the self-signed one of its image, reached over the compose network
    context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def main() -> int:
    splunkd = os.environ.get("SPLUNKD_URL", "https://splunk:8089").rstrip("/")
    scorer = os.environ.get("SCORER_URL", "http://scorer:8080")
    password = os.environ.get("SPLUNK_PASSWORD", "")
    token = os.environ.get("OCSF_ANOMALY_API_TOKEN", "").strip()
    wait = float(os.environ.get("SPLUNK_SETUP_WAIT_SECONDS", "900"))
    if not password:
        print("SPLUNK_PASSWORD is not set: Splunk does not start without it", file=sys.stderr)
        return 1
    auth = base64.b64encode(f"admin:{password}".encode()).decode()

    deadline = time.monotonic() + wait
    status: int | str = "no answer"
    while time.monotonic() < deadline:
        try:
            status = call(splunkd, auth, f"/services/apps/local/{APP}")
        except OSError as error:  # not listening yet
            status = str(error)
        if status == 200:
            break
        time.sleep(5)
    else:
        print(f"the {APP} app did not appear in {splunkd} within {wait:.0f} s ({status})", file=sys.stderr)
        return 1

    status = call(splunkd, auth, f"/servicesNS/nobody/{APP}/configs/conf-{APP}/scorer", {"url": scorer})
    if status != 200:
        print(f"setting [scorer] url in {APP}.conf: HTTP {status}", file=sys.stderr)
        return 1
    print(f"{APP}.conf [scorer] url = {scorer}")

    if not token:
        print("OCSF_ANOMALY_API_TOKEN is empty: no token stored (the scorer then accepts any caller)")
        return 0
    passwords = f"/servicesNS/nobody/{APP}/storage/passwords"
    status = call(splunkd, auth, passwords, {"realm": REALM, "name": NAME, "password": token})
    if status == 409:  # stored before: replace it
        entry = urllib.parse.quote(f"{REALM}:{NAME}:", safe="")
        status = call(splunkd, auth, f"{passwords}/{entry}", {"password": token})
    if status not in (200, 201):
        print(f"storing the scorer token in storage/passwords: HTTP {status}", file=sys.stderr)
        return 1
    print(f"the scorer token stored in {APP}'s storage/passwords (realm {REALM}, name {NAME})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
