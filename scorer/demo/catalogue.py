"""The demo company's static data: the OCSF vocabulary (classes, severities, products), its servers,
web sites, processes, AWS operations and regions, departments, background DNS names, the names its
people are drawn from, and what attackers use (networks, tunnel domains). Nothing here is random."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

OCSF_VERSION: Final = "1.5.0"
CLASS_UIDS: Final[tuple[int, ...]] = (3002, 4001, 4002, 4003, 1007, 6003)

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS
_DOMAIN: Final = "acme.internal"
_ACCOUNT_ID: Final = "123456789012"

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
