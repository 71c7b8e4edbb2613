"""Normal events: a block-fetched stream of random draws, one builder per OCSF class (an actor and its
habits → one event with the base fields), and the times and actors of normal events following the
company's weekly rhythm."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import numpy as np

from scorer.demo.catalogue import (
    _ACCOUNT_ID,
    _AUTH_PROTOCOL_IDS,
    _CLASSES,
    _DOCS,
    _DOMAIN,
    _HOUR_MS,
    _HTTP_ACTIVITY,
    _LOGON_TYPES,
    _PKGS,
    _PRODUCTS,
    _REPOS,
    _RESOLVER,
    _SERVERS,
    _SEVERITY,
    _SYSTEM_PROCS,
    OCSF_VERSION,
    _Dest,
    _Proc,
)
from scorer.demo.world import _Actor, _World

Event = dict[str, Any]
_T = TypeVar("_T")

NORMAL: Final = "normal"  # the label of a normal event
_BLOCK: Final = 16_384  # draws fetched from numpy at a time


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
