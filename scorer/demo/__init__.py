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

Modules
-------
The package's API is what this module exports; its modules are its parts:

* ``catalogue``: the static data (OCSF vocabulary, servers, sites, processes, operations, departments, names).
* ``world``: the simulated company, its actors and their habits, and when each is active.
* ``events``: the random draws and the builders of normal events, one per class, and their times.
* ``anomalies``: the injected anomalies.
* ``generate``: one period's timeline of both, :func:`generate_events`, :func:`generate_later` and
  :func:`write_demo_files`.
"""

from scorer.demo.anomalies import ANOMALY_KINDS
from scorer.demo.catalogue import CLASS_UIDS
from scorer.demo.events import NORMAL
from scorer.demo.generate import MAX_NEW_HIRES, DemoFiles, generate_events, generate_later, write_demo_files

__all__ = [
    "ANOMALY_KINDS",
    "CLASS_UIDS",
    "MAX_NEW_HIRES",
    "NORMAL",
    "DemoFiles",
    "generate_events",
    "generate_later",
    "write_demo_files",
]
