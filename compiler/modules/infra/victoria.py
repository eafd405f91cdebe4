"""The Victoria stack on the infra nodes: VictoriaMetrics (which also scrapes: the scrape config and the file_sd
target files of the scrape targets the modules published), VictoriaLogs, VictoriaTraces, and vmalert with sty's
rule files. Each infra node scrapes the whole fleet on its own, so the target files are identical on every one;
the exception is the `pgrds` job, each node's own pg_exporters of remote instances (pgrds.py), as in Pigsty.

The jobs, their paths and target folders are Pigsty's (`/infra/targets/<job>/*.yml`). Whether a job is scraped over
HTTPS is what its publisher says, never a module name here: a target group labelled `__scheme__: https` (MinIO
with minio_https, Patroni with patroni_ssl_enabled, ETCD once its clients speak TLS) is scraped over HTTPS and
its job trusts the fleet CA. Intentional differences from Pigsty: no client certificate is presented (Pigsty's
etcd and minio jobs send the infra node's; neither server asks for one); no jobs for modules sty does not render
(docker, mysql, kafka, juice); MinIO's metrics path is the v2 cluster one (MINIO's choice).
"""

from __future__ import annotations

from typing import Any

from ...bundle import Certificate, Directory, FileSpec, HostBundle, reload
from ...model import Host
from ...render import HEADER, one_line, to_yaml
from .daemon import add_daemon, daemon_of
from .model import MODULE, TARGETS_DIR, InfraModel
from .rules import alert_rules

RULES_DIR = "/infra/rules"
SCRAPE_CONFIG = "/infra/prometheus.yml"
# The fleet CA certificate the scrapers trust for HTTPS targets (issued by the CA module).
CA_CERT = "/etc/pki/ca.crt"
# the scraper's own certificate from the fleet CA, for targets that ask every TLS client for one (etcd, as Pigsty)
SCRAPE_CERT, SCRAPE_KEY = "/etc/pki/infra.crt", "/etc/pki/infra.key"  # Pigsty's names
# The scrape jobs in the order the scrape config lists them, with their metrics path (None: the infra node's
# exporter_metrics_path). A job some module publishes that is not listed is scraped at /metrics, after these.
JOBS: tuple[tuple[str, str | None], ...] = (
    ("infra", "/metrics"),
    ("node", None),
    ("etcd", "/metrics"),
    ("pgsql", None),
    ("pgrds", None),  # this node's own pg_exporters of remote instances (pgrds.py), not a board job
    ("redis", "/scrape"),
    ("minio", "/minio/metrics/v3"),  # Pigsty 4.5's silo: the v3 API
)


def render_targets(host: Host, b: HostBundle, model: InfraModel) -> None:
    """The file_sd target files every vmetrics reads (re-read on change: no action needed)."""
    if not host.params.get("vmetrics_enabled"):
        return
    for path, tf in sorted(model.fanin.targets.items()):
        b.add(FileSpec(path, MODULE, tf.text, "yaml"))
    jobs = model.fanin.jobs()
    b.directories.add(Directory(TARGETS_DIR))
    for job in sorted(jobs):
        b.directories.add(Directory(f"{TARGETS_DIR}/{job}"))


def render_victoria(host: Host, model: InfraModel, data: str, b: HostBundle) -> None:
    p = host.params
    if p.get("vmetrics_enabled"):
        d = daemon_of(host, "vmetrics")
        text = to_yaml(scrape_config(host, model), HEADER)
        b.add(FileSpec(SCRAPE_CONFIG, MODULE, text, "yaml", actions=[reload(d.unit)]))
        if model.fanin.https_jobs():
            sans = tuple(dict.fromkeys([host.nodename, host.ip]))
            cert = Certificate(
                "infra-scrape", f"{host.nodename}-scrape", sans, SCRAPE_CERT, SCRAPE_KEY, d.user, "client"
            )
            b.certificates.add(cert)
        b.check("promtool", SCRAPE_CONFIG, TARGETS_DIR, where="build")
        b.check("vmagent", SCRAPE_CONFIG)
        _database(host, "vmetrics", data, b, [f"-promscrape.config={SCRAPE_CONFIG}"])
    if p.get("vlogs_enabled"):
        _database(host, "vlogs", data, b, [])
    if p.get("vtraces_enabled"):
        _database(host, "vtraces", data, b, [])
    if p.get("vmalert_enabled"):
        _vmalert(host, model, b)


def _database(host: Host, comp: str, data: str, b: HostBundle, extra_flags: list[str]) -> None:
    """vmetrics, vlogs or vtraces: the same flags, a store under infra_data."""
    p = host.params
    port = int(p[f"{comp}_port"])
    store = f"{data}/{comp}"
    d = daemon_of(host, comp)
    flags = [f"-httpListenAddr=:{port}", f"-storageDataPath={store}", *extra_flags]
    options = p.get(f"{comp}_options") or ""
    add_daemon(host, comp, flags, options, b, port=port, health=f"http://{host.ip}:{port}/health")
    b.directories.add(Directory(store, d.user, d.user, "0750"))


def _vmalert(host: Host, model: InfraModel, b: HostBundle) -> None:
    """vmalert reads and writes this node's vmetrics (else that of the first infra node running one) and notifies
    every Alertmanager."""
    p = host.params
    port = int(p["vmalert_port"])
    if p.get("vmetrics_enabled"):
        metrics = f"http://127.0.0.1:{int(p['vmetrics_port'])}"
    else:
        peer = next(m for m in model.members if m.params.get("vmetrics_enabled"))
        metrics = f"http://{peer.ip}:{int(peer.params['vmetrics_port'])}"
    notifiers = [
        f"-notifier.url=http://{m.ip}:{int(m.params['alertmanager_port'])}"
        for m in model.members
        if m.params.get("alertmanager_enabled")
    ]
    flags = [
        f"-httpListenAddr=:{port}",
        f"-rule={RULES_DIR}/*.yml",
        f"-datasource.url={metrics}",
        f"-remoteWrite.url={metrics}",
        f"-remoteRead.url={metrics}",
        *notifiers,
        f"-evaluationInterval={one_line(p['vmetrics_scrape_interval'])}",
    ]
    d = daemon_of(host, "vmalert")
    for name, groups in sorted(alert_rules(model.fleet.board).items()):
        text = to_yaml({"groups": groups}, HEADER)
        b.add(FileSpec(f"{RULES_DIR}/{name}.yml", MODULE, text, "yaml", actions=[reload(d.unit)]))
    b.directories.add(Directory(RULES_DIR))
    b.check("promtool", RULES_DIR, where="build")
    b.check("vmalert", RULES_DIR)
    options = p.get("vmalert_options") or ""
    add_daemon(host, "vmalert", flags, options, b, port=port, health=f"http://{host.ip}:{port}/health")


def _file_sd(job: str) -> list[dict[str, Any]]:
    return [{"files": [f"{TARGETS_DIR}/{job}/*.yml"]}]


def _ping_job(blackbox_port: int) -> dict[str, Any]:
    """ICMP probes through the local blackbox exporter: the target becomes the probe's parameter."""
    return {
        "job_name": "ping",
        "metrics_path": "/probe",
        "params": {"module": ["icmp"]},
        "file_sd_configs": _file_sd("ping"),
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{blackbox_port}"},
        ],
    }


def scrape_config(host: Host, model: InfraModel) -> dict[str, Any]:
    """A Prometheus-compatible scrape config that vmagent 1.79 also accepts (no rule_files, alerting,
    evaluation_interval or file_sd refresh_interval): one job per published job, those INFRA knows first."""
    p = host.params
    fan = model.fanin
    jobs, https = fan.jobs(), fan.https_jobs()
    if model.remote.get(host.ip):
        jobs = jobs | {"pgrds"}
    configs: list[dict[str, Any]] = []
    if p.get("blackbox_enabled") and "ping" in jobs:
        configs.append(_ping_job(int(p["blackbox_port"])))
    known = dict(JOBS)
    for job in [j for j, _ in JOBS if j in jobs] + sorted(jobs - set(known) - {"ping"}):
        path = known.get(job, "/metrics") or str(p["exporter_metrics_path"])
        config: dict[str, Any] = {"job_name": job, "metrics_path": path, "file_sd_configs": _file_sd(job)}
        if job == "minio":  # as Pigsty: v3's cluster usage series per bucket grow with the buckets; dropped
            config["metric_relabel_configs"] = [{"source_labels": ["bucket"], "regex": ".+", "action": "drop"}]
        if job in https:  # some target of the job serves HTTPS with a certificate of the fleet CA
            config["tls_config"] = {"ca_file": CA_CERT, "cert_file": SCRAPE_CERT, "key_file": SCRAPE_KEY}
        configs.append(config)
    return {
        "global": {
            "scrape_interval": str(p["vmetrics_scrape_interval"]),
            "scrape_timeout": str(p["vmetrics_scrape_timeout"]),
        },
        "scrape_configs": configs,
    }
