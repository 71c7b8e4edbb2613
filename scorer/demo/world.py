"""The simulated company: employees drawn per department with their habits (workstations, working
hours, sites, destinations, DNS names, processes, AWS operations and regions, browser), the service
accounts, later hires, and how active each actor is in every hour of the week. The company comes from
the stream ``(seed, 0)``, the new hires from ``(seed, 2)``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scorer.demo.catalogue import (
    _BACKGROUND_DNS,
    _BROWSERS,
    _CLASS_ORDER,
    _COMMON_OPS,
    _DEPTS,
    _DOMAIN,
    _FIRST_NAMES,
    _LAST_NAMES,
    _LINUX_PROCS,
    _PROCS,
    _SERVERS,
    _SITES,
    _Dept,
    _Dest,
    _Proc,
    _Site,
)


def _cum(weights: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(x) for x in np.cumsum(np.asarray(weights, dtype=np.float64)))


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
