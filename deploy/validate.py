#!/usr/bin/env python3
"""Checks the deployment files with the validators `make setup` installs (target/deploy-tools),
and cross-checks them against the shipped config, so that a changed port, size or path cannot
leave one of them behind.

    make check-deploy                       # what `make test` runs
    python3 deploy/validate.py --write-configmap   # regenerate deploy/kubernetes/configmap.yaml

Validators: hadolint (Dockerfile), docker-compose config and the compose-spec JSON schema
(compose.yaml), kubernetes-validate (the manifests, strict, offline schemas), the github-workflows
JSON schema (.github/workflows/ci.yml), shellcheck (scripts), systemd-analyze verify and
security (the unit) where systemd is installed, and openapi-spec-validator (docs/openapi.yaml, the
admin API, against the OpenAPI 3.1 specification; tests/admin_api.rs checks it against the running
admin listener). Every check prints one line; any failure exits 1.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# Hard memory limits sit this far above the budget (memory tier + 64 MiB): the peak measured
# while the memory tier churns through the disk tier, and the disk tier's page cache.
HEADROOM_MIB = 32
TOOLS = Path(os.environ.get("KNITCACHE_DEPLOY_TOOLS", ROOT / "target" / "deploy-tools" / "bin"))
CONFIGMAP_HEADER = """\
# Generated from config/knitcache.yaml by `python3 deploy/validate.py --write-configmap`;
# `make check-deploy` fails when the two differ. Edit config/knitcache.yaml, then regenerate.
# knitcache runs with --watch-config, so an applied change is live within a minute or two.
"""

failures = []


def ok(what):
    print(f"ok: {what}")


def fail(what, detail=""):
    failures.append(what)
    print(f"FAIL: {what}")
    if detail:
        print("  " + detail.strip().replace("\n", "\n  "))


def check(cond, what, detail=""):
    if cond:
        ok(what)
    else:
        fail(what, detail)


def tool(name):
    path = TOOLS / name
    return str(path) if path.exists() else shutil.which(name)


def run(what, argv, cwd=ROOT, quiet_is_ok=False):
    """Runs a validator; a non-zero exit (or, with quiet_is_ok, any output) is a failure."""
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or (quiet_is_ok and out):
        fail(what, out or f"exit {proc.returncode}")
    else:
        ok(what)
    return proc


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def shipped_config():
    return yaml.safe_load((ROOT / "config" / "knitcache.yaml").read_text())


def mib(quantity):
    """A Kubernetes or systemd memory quantity in MiB."""
    m = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", quantity)
    if not m:
        raise ValueError(f"unsupported quantity {quantity!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n * 1024 if unit in ("Gi", "G") else n


# ---- Docker ------------------------------------------------------------------------------------


def dockerfile_cmd(text, instruction):
    m = re.search(rf"^{instruction} (\[.*\])\s*$", text, re.M)
    return json.loads(m.group(1)) if m else None


def check_docker(config):
    dockerfile = DEPLOY / "Dockerfile"
    run("hadolint deploy/Dockerfile", [tool("hadolint"), str(dockerfile)])
    text = dockerfile.read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    check(len(stages) >= 2 and "slim" in stages[-1],
          "Dockerfile: multi-stage, runs on a slim base", f"FROM lines: {stages}")
    user = re.findall(r"^USER (\S+)", text, re.M)
    check(bool(user) and re.fullmatch(r"[1-9]\d*(:\d+)?", user[-1]) is not None,
          "Dockerfile: runs as a numeric non-root user", f"USER: {user}")
    cmd = dockerfile_cmd(text, "CMD") or []
    admin = cmd[cmd.index("--admin-listen") + 1] if "--admin-listen" in cmd else ""
    cache = cmd[cmd.index("--cache-dir") + 1] if "--cache-dir" in cmd else ""
    admin_port = admin.rsplit(":", 1)[-1]
    check(admin.startswith("0.0.0.0:"), "Dockerfile: admin listener on 0.0.0.0 by a flag", admin)
    check(re.search(rf"HEALTHCHECK .*\n?.*127\.0\.0\.1:{admin_port}/healthz", text) is not None,
          "Dockerfile: HEALTHCHECK probes /healthz on the admin port", f"admin port {admin_port}")
    check(f'VOLUME ["{cache}"]' in text, "Dockerfile: the cache directory is a volume", cache)
    listen_port = config["listen"].rsplit(":", 1)[-1]
    check(re.search(rf"^EXPOSE .*\b{listen_port}\b", text, re.M) is not None,
          f"Dockerfile: exposes the proxy port {listen_port}")
    ignore = (ROOT / ".dockerignore").read_text()
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M)
    sources = [s for line in copied for s in line.split()]
    missing = [s for s in sources if f"!{s.split('/')[0]}" not in ignore
               and f"!{s.split('/')[0]}/" not in ignore]
    check(not missing, ".dockerignore keeps every file the Dockerfile copies", f"{missing}")
    return cmd


def check_compose(image_cmd):
    compose = DEPLOY / "compose.yaml"
    run("docker-compose config: deploy/compose.yaml",
        [tool("docker-compose"), "-f", str(compose), "config", "-q"])
    run("compose-spec schema: deploy/compose.yaml",
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)])
    doc = yaml.safe_load(compose.read_text())
    svc = doc["services"]
    # The knitcache replicas: the services running `knitcache run`.
    replicas = sorted(n for n, s in svc.items() if (s.get("command") or [""])[0] == "run")
    check(len(replicas) >= 2, "compose: two knitcache replicas or more", f"{replicas}")
    cmd = svc[replicas[0]]["command"]
    check(all(svc[n]["command"] == cmd for n in replicas),
          "compose: every replica runs the same arguments", f"{replicas}")
    check(cmd[: len(image_cmd)] == image_cmd,
          "compose: knitcache runs the image's CMD plus flags", f"{cmd} vs {image_cmd}")
    erp_ip = svc["erp"]["networks"]["erp"]["ipv4_address"]
    erp_port = svc["erp"]["command"][svc["erp"]["command"].index("--listen") + 1].rsplit(":")[-1]
    upstream = cmd[cmd.index("--upstream") + 1]
    check(upstream == f"{erp_ip}:{erp_port}",
          "compose: --upstream is the ERP's fixed address", f"{upstream} vs {erp_ip}:{erp_port}")
    subnet = doc["networks"]["erp"]["ipam"]["config"][0]["subnet"]
    check(erp_ip.rsplit(".", 1)[0] == subnet.split("/")[0].rsplit(".", 1)[0],
          "compose: the ERP's address is in the network's subnet", f"{erp_ip} {subnet}")
    server = shipped_config()["server"]
    need = server["grace_period_secs"] + server["graceful_shutdown_timeout_secs"]
    for n in replicas:
        grace = re.fullmatch(r"(\d+)s", svc[n]["stop_grace_period"])
        check(grace is not None and int(grace.group(1)) > need,
              f"compose: {n}'s stop_grace_period covers the {need} s shutdown")
    published = [p.rsplit(":", 1)[0] for n in replicas for p in svc[n]["ports"]]
    check(len(published) == len(set(published)), "compose: each replica publishes ports of its own",
          f"{published}")
    cache_dir = image_cmd[image_cmd.index("--cache-dir") + 1]
    caches = [v.split(":")[0] for n in replicas for v in svc[n]["volumes"]
              if v.split(":")[1] == cache_dir]
    check(len(caches) == len(replicas) and len(set(caches)) == len(caches),
          "compose: each replica has a cache volume of its own", f"{caches}")
    check_compose_cluster(doc, replicas, cmd)
    admin_port = image_cmd[image_cmd.index("--admin-listen") + 1].rsplit(":", 1)[-1]
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = sorted(t for job in scrape["scrape_configs"] if job["job_name"] == "knitcache"
                     for sc in job["static_configs"] for t in sc["targets"])
    check(targets == sorted(f"{n}:{admin_port}" for n in replicas),
          "compose: Prometheus scrapes every replica's admin port", f"{targets}")
    for f in ["datasources/knitcache.yaml", "dashboards/knitcache.yaml"]:
        path = DEPLOY / "grafana" / "provisioning" / f
        d = yaml.safe_load(path.read_text())
        check(d.get("apiVersion") == 1, f"grafana provisioning: {f}")
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/knitcache.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    entry = " ".join(svc["grafana"]["entrypoint"])
    check(f"/{uid}/g" in entry, "compose: the dashboard is given the provisioned datasource uid")
    rules = DEPLOY / "prometheus" / "knitcache.rules.yml"
    promtool = shutil.which("promtool")
    if promtool and rules.exists():
        with tempfile.TemporaryDirectory() as tmp:
            conf = (DEPLOY / "compose" / "prometheus.yml").read_text()
            conf = conf.replace("/etc/prometheus/knitcache/", str(DEPLOY / "prometheus") + "/")
            Path(tmp, "prometheus.yml").write_text(conf)
            run("promtool check config: deploy/compose/prometheus.yml",
                [promtool, "check", "config", str(Path(tmp, "prometheus.yml"))])
    else:
        print("skip: promtool check of deploy/compose/prometheus.yml "
              "(needs promtool and deploy/prometheus/knitcache.rules.yml)")


def compose_var(value):
    """The variable a compose value `${NAME:-default}` interpolates, and its default."""
    m = re.fullmatch(r"\$\{(\w+)(?::-([^}]*))?\}", str(value))
    return (m.group(1), m.group(2)) if m else (None, None)


def redis_port(command):
    """The port a redis-server command line listens on (`--port N`, else 6379)."""
    m = re.search(r"--port\s+(\d+)", command)
    return int(m.group(1)) if m else 6379


def check_compose_cluster(doc, replicas, cmd):
    """Cluster mode: the replicas' --cluster URL names the Redis service and its port, and the
    password reaches both sides from one variable of the environment, never from a file."""
    svc = doc["services"]
    redis = [n for n, s in svc.items()
             if re.match(r"(redis:7|valkey/valkey:[89])", str(s.get("image", "")))]
    check(len(redis) == 1, "compose: one Redis (redis:7) or Valkey (valkey/valkey:8) service",
          f"{redis}")
    if len(redis) != 1 or "--cluster" not in cmd:
        fail("compose: the replicas run in cluster mode (--cluster URL)", f"{cmd}")
        return
    name, r = redis[0], svc[redis[0]]
    script = " ".join(r.get("entrypoint", [])[2:] + (r.get("command") or []))
    url = urlsplit(cmd[cmd.index("--cluster") + 1])
    check(url.scheme in ("redis", "rediss") and url.hostname == name
          and (url.port or 6379) == redis_port(script) and url.password is None,
          f"compose: --cluster names the {name} service and its port, without a password",
          url.geturl())
    shared = [n for n in replicas
              if set(svc[n]["networks"]) & set(r.get("networks") or ["default"])]
    check(shared == replicas, f"compose: every replica shares a network with {name}", f"{shared}")
    check(not r.get("ports"), f"compose: {name} is published on no host port")
    env_name = shipped_config().get("cluster", {}).get("password_env", "KNITCACHE_REDIS_PASSWORD")
    values = {str((svc[n].get("environment") or {}).get(env_name)) for n in replicas}
    var, default = compose_var(next(iter(values)))
    check(len(values) == 1 and var is not None,
          f"compose: every replica takes {env_name} from the environment (${{VAR:-default}})",
          f"{values}")
    renv = r.get("environment") or {}
    passed = [k for k, v in renv.items() if compose_var(v)[0] == var]
    check(any(re.search(rf"requirepass\s+\"?\$\$\{{?{k}\b", script) for k in passed),
          f"compose: {name} requires the password the replicas are given (requirepass ${var})",
          script)
    leaked = [n for n in [*replicas, name] if default and default in
              " ".join(svc[n].get("command") or []) + " ".join(svc[n].get("entrypoint") or [])]
    check(not leaked, "compose: no command line carries the password", f"{leaked}")


# ---- Kubernetes --------------------------------------------------------------------------------


def configmap_text():
    body = (ROOT / "config" / "knitcache.yaml").read_text()
    lines = "".join(("    " + line) if line.strip() else "\n" for line in body.splitlines(True))
    return (CONFIGMAP_HEADER + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            "  name: knitcache-config\n  labels:\n    app.kubernetes.io/name: knitcache\n"
            "data:\n  knitcache.yaml: |\n" + lines)


def check_kubernetes(config, image_cmd):
    files = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    builtin = [p for p in files if p.name != "servicemonitor.yaml"]
    run("kubernetes-validate --strict: " + " ".join(p.name for p in builtin),
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, builtin)])
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    check(sorted(kustomization["resources"]) == sorted(p.name for p in files),
          "kustomization lists every manifest")
    kubectl = shutil.which("kubectl")
    if kubectl:
        run("kubectl kustomize deploy/kubernetes", [kubectl, "kustomize", str(K8S)])
    else:
        print("skip: kubectl kustomize (kubectl not installed)")

    docs = {(d["kind"], d["metadata"]["name"]): d for p in files for d in load_all(p)}
    cm = (K8S / "configmap.yaml").read_text()
    check(cm == configmap_text(), "configmap.yaml is config/knitcache.yaml",
          "regenerate: python3 deploy/validate.py --write-configmap")

    dep = docs[("Deployment", "knitcache")]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = " ".join(c["args"])
    missing = [a for a in image_cmd if a not in args.split()]
    check(not missing and "--watch-config" in args,
          "Deployment: the image's CMD flags plus --watch-config", f"missing {missing}")
    limit, request = mib(c["resources"]["limits"]["memory"]), mib(c["resources"]["requests"]["memory"])
    hard = config["cache"]["memory_mib"] + 64 + HEADROOM_MIB
    check(limit == hard and request == hard,
          f"Deployment: memory request = limit = memory tier + 64 + {HEADROOM_MIB} MiB ({hard} MiB)",
          f"request {request}, limit {limit}")
    cache_vol = next(v for v in pod["volumes"] if v["name"] == "cache")
    check(mib(cache_vol["emptyDir"]["sizeLimit"]) >= config["cache"]["disk_mib"],
          "Deployment: the cache emptyDir holds the disk tier",
          f"{cache_vol['emptyDir']['sizeLimit']} vs disk_mib {config['cache']['disk_mib']}")
    server = config["server"]
    pre = 5 if c.get("lifecycle", {}).get("preStop") else 0
    need = server["grace_period_secs"] + server["graceful_shutdown_timeout_secs"] + pre
    check(pod["terminationGracePeriodSeconds"] > need,
          f"Deployment: terminationGracePeriodSeconds covers the {need} s shutdown")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    admin_port = int(config["admin_listen"].rsplit(":", 1)[-1])
    check(ports.get("admin") == admin_port and ports.get("http") == 5006,
          "Deployment: ports http 5006 and admin", f"{ports}")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz"
          and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
          and c["livenessProbe"]["httpGet"]["port"] == "admin",
          "Deployment: liveness /healthz, readiness /readyz on the admin port")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    check("subPath" not in mounts["config"] and mounts["config"]["mountPath"] == "/etc/knitcache",
          "Deployment: the ConfigMap is a directory mount (updates reach the file)")
    labels = dep["spec"]["selector"]["matchLabels"]
    pdb = docs[("PodDisruptionBudget", "knitcache")]
    check(pdb["spec"]["selector"]["matchLabels"] == labels
          and dep["spec"]["replicas"] > pdb["spec"].get("maxUnavailable", 1),
          "PodDisruptionBudget selects the Deployment's pods and leaves replicas up")
    for name in ["knitcache", "knitcache-admin"]:
        svc = docs[("Service", name)]
        check(all(svc["spec"]["selector"].get(k) == v for k, v in labels.items())
              and all(p["targetPort"] in ports for p in svc["spec"]["ports"]),
              f"Service {name}: selects the pods, targets named container ports")

    # NetworkPolicy: the proxy port open to all, the admin port to the monitoring namespace's
    # Prometheus pods only. A rule without `ports` admits every port, one without `from` every
    # peer: neither may reach the admin port.
    np = docs[("NetworkPolicy", "knitcache")]
    rules = np["spec"].get("ingress", [])
    check(np["spec"]["podSelector"].get("matchLabels") == labels
          and "Ingress" in np["spec"].get("policyTypes", []),
          "NetworkPolicy: governs ingress to the Deployment's pods")
    check(all(r.get("ports") for r in rules)
          and all(p.get("port") in ports for r in rules for p in r["ports"]),
          "NetworkPolicy: every rule names container ports (none admits all ports)")
    admin_rules = [r for r in rules if any(p.get("port") in ("admin", admin_port) for p in r["ports"])]

    def monitoring_prometheus(peer):
        ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
        pods = peer.get("podSelector", {}).get("matchLabels", {})
        return (ns == {"kubernetes.io/metadata.name": "monitoring"}
                and pods.get("app.kubernetes.io/name") == "prometheus" and "ipBlock" not in peer)

    check(admin_rules and all(r.get("from") and all(monitoring_prometheus(p) for p in r["from"])
                              for r in admin_rules),
          "NetworkPolicy: the admin port admits Prometheus pods of the monitoring namespace only",
          f"{admin_rules}")
    check(any(not r.get("from") and any(p.get("port") in ("http", 5006) for p in r["ports"])
              for r in rules),
          "NetworkPolicy: the proxy port stays open to every client")

    check_kubernetes_cluster(docs, dep, labels)

    # ServiceMonitor is a CRD (Prometheus Operator): not in kubernetes-validate's schemas, so
    # its structure and references are checked here.
    sm = docs[("ServiceMonitor", "knitcache")]
    admin_svc = docs[("Service", "knitcache-admin")]
    sel = sm["spec"]["selector"]["matchLabels"]
    check(sm["apiVersion"] == "monitoring.coreos.com/v1"
          and all(admin_svc["metadata"]["labels"].get(k) == v for k, v in sel.items())
          and not all(docs[("Service", "knitcache")]["metadata"]["labels"].get(k) == v
                      for k, v in sel.items()),
          "ServiceMonitor: selects only the headless admin Service")
    svc_ports = {p["name"] for p in admin_svc["spec"]["ports"]}
    check(all(e["port"] in svc_ports and e["path"] == "/metrics" for e in sm["spec"]["endpoints"]),
          "ServiceMonitor: scrapes /metrics on the admin Service's named port")


def env_from_secret(container):
    """A container's variables taken from Secrets: name -> (secret, key)."""
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


def check_kubernetes_cluster(docs, dep, labels):
    """Cluster mode: the Deployment's replicas take the Redis URL and password from one Secret,
    the URL names the Redis StatefulSet's headless Service and port, Redis requires that
    password, and only knitcache's pods reach Redis's port."""
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(c["args"])
    env = env_from_secret(c)
    m = re.search(r'--cluster "?\$\{?(\w+)', args)
    url_ref = env.get(m.group(1)) if m else None
    check(url_ref is not None, "Deployment: cluster mode, --cluster from a Secret's url",
          args)
    env_name = shipped_config().get("cluster", {}).get("password_env", "KNITCACHE_REDIS_PASSWORD")
    pw_ref = env.get(env_name)
    check(pw_ref is not None and url_ref is not None and pw_ref[0] == url_ref[0],
          f"Deployment: {env_name} (cluster.password_env) from the same Secret", f"{env}")
    if url_ref is None or pw_ref is None:
        return
    secret = docs.get(("Secret", url_ref[0]))
    if secret is None:
        fail(f"Secret {url_ref[0]}: shipped with the manifests")
        return
    data = secret.get("stringData", {})
    url = urlsplit(data.get(url_ref[1], ""))
    sts = [d for (kind, _), d in docs.items() if kind == "StatefulSet"]
    check(len(sts) == 1, "StatefulSet: one, the shared Redis", f"{[d['metadata']['name'] for d in sts]}")
    if len(sts) != 1:
        return
    sts = sts[0]
    name = sts["metadata"]["name"]
    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    rc = pod["spec"]["containers"][0]
    check(re.match(r"(redis:7|valkey/valkey:[89])", rc["image"]) is not None,
          f"StatefulSet {name}: runs Redis 7 or Valkey 8", rc["image"])
    check(sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
          and not labels.items() <= pod_labels.items(),
          f"StatefulSet {name}: selects its pods, which the Deployment's selector does not")
    svc = docs.get(("Service", sts["spec"]["serviceName"]))
    rports = {p["name"]: p["containerPort"] for p in rc["ports"]}
    ok_svc = (svc is not None and svc["spec"].get("clusterIP") == "None"
              and svc["spec"]["selector"].items() <= pod_labels.items())
    check(ok_svc, f"StatefulSet {name}: its serviceName is a headless Service selecting its pods")
    if not ok_svc:
        return
    sname = svc["metadata"]["name"]
    sports = {p["port"]: p["targetPort"] for p in svc["spec"]["ports"]}
    hosts = {sname, f"{name}-0.{sname}"}
    host_ok = url.hostname is not None and (url.hostname in hosts or any(
        url.hostname.startswith(h + ".") for h in hosts))
    check(url.scheme in ("redis", "rediss") and host_ok and url.password is None
          and sports.get(url.port or 6379) in rports,
          f"Secret {url_ref[0]}: url names the Service {sname} and its Redis port, no password",
          url.geturl())
    renv = env_from_secret(rc)
    script = " ".join(rc.get("command", []) + rc.get("args", []))
    given = [k for k, ref in renv.items() if ref == pw_ref]
    check(any(re.search(rf'requirepass\s+"?\$\{{?{k}\b', script) for k in given),
          f"StatefulSet {name}: Redis requires the password the replicas are given", script)
    check(pw_ref[1] in data and data[pw_ref[1]] not in args + script,
          f"Secret {url_ref[0]}: holds the password, which no command line carries")
    mounts = {m["mountPath"]: m["name"] for m in rc.get("volumeMounts", [])}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    check(mounts.get("/data") in claims and "--appendonly yes" in script,
          f"StatefulSet {name}: append-only persistence on a volume claim at /data")
    # Only knitcache's pods, and only on Redis's port.
    policies = [d for (kind, _), d in docs.items() if kind == "NetworkPolicy"
                and d["spec"]["podSelector"].get("matchLabels", {}).items() <= pod_labels.items()
                and d["spec"]["podSelector"].get("matchLabels")]
    rules = [r for p in policies for r in p["spec"].get("ingress", [])]
    redis_ports = {p for p, n in rports.items()} | set(rports.values())
    check(len(policies) == 1 and "Ingress" in policies[0]["spec"].get("policyTypes", [])
          and rules and all(
              r.get("from") and r.get("ports")
              and all(set(peer) == {"podSelector"} and peer["podSelector"].get("matchLabels") == labels
                      for peer in r["from"])
              and all(p.get("port") in redis_ports for p in r["ports"])
              for r in rules),
          f"NetworkPolicy: {name} admits knitcache's pods on its Redis port only", f"{rules}")


# ---- systemd -----------------------------------------------------------------------------------


def check_systemd(config):
    unit = DEPLOY / "knitcache.service"
    text = unit.read_text()
    values = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    server = config["server"]
    need = server["grace_period_secs"] + server["graceful_shutdown_timeout_secs"]
    check(int(values["TimeoutStopSec"]) > need, f"unit: TimeoutStopSec covers the {need} s shutdown")
    budget = config["cache"]["memory_mib"] + 64
    check(mib(values["MemoryHigh"]) == budget, f"unit: MemoryHigh = memory tier + 64 MiB ({budget})")
    check(mib(values["MemoryMax"]) == budget + HEADROOM_MIB,
          f"unit: MemoryMax = MemoryHigh + {HEADROOM_MIB} MiB")
    env = re.search(r'^Environment="KNITCACHE_ARGS=(.*)"$', text, re.M).group(1).split()
    pid_file = env[env.index("--pid-file") + 1]
    check(values.get("PIDFile") == pid_file and pid_file.startswith("/run/knitcache/"),
          "unit: PIDFile is the --pid-file, in RuntimeDirectory")
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("skip: systemd-analyze verify and security (systemd not installed)")
        return
    # verify resolves the unit's executables and dependencies inside --root: a tree with the
    # distribution's units, the unit, the helper and a stand-in for the binary.
    with tempfile.TemporaryDirectory() as root:
        r = Path(root)
        (r / "etc/systemd/system").mkdir(parents=True)
        shutil.copy(unit, r / "etc/systemd/system/knitcache.service")
        for d in ["/lib/systemd/system", "/usr/lib/systemd/system"]:
            if Path(d).is_dir() and not (r / "usr/lib/systemd/system").exists():
                shutil.copytree(d, r / "usr/lib/systemd/system", symlinks=True)
        for exe, src in [("usr/local/bin/knitcache", "/bin/true"), ("bin/kill", "/bin/kill"),
                         ("usr/local/lib/knitcache/knitcache-reload",
                          str(DEPLOY / "knitcache-reload"))]:
            (r / exe).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, r / exe)
        run("systemd-analyze verify deploy/knitcache.service",
            [analyze, "verify", f"--root={root}", "knitcache.service"], quiet_is_ok=True)
    run("systemd-analyze security --threshold=20 deploy/knitcache.service",
        [analyze, "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)])


# ---- the rest ----------------------------------------------------------------------------------


def check_scripts_and_ci():
    scripts = [DEPLOY / "knitcache-reload", ROOT / ".ci" / "run"]
    run("shellcheck " + " ".join(str(s.relative_to(ROOT)) for s in scripts),
        [tool("shellcheck"), *map(str, scripts)])
    workflow = ROOT / ".github" / "workflows" / "ci.yml"
    run("github-workflows schema: .github/workflows/ci.yml",
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)])


def check_openapi():
    run("openapi-spec-validator docs/openapi.yaml",
        [tool("openapi-spec-validator"), str(ROOT / "docs" / "openapi.yaml")])


def main():
    if sys.argv[1:] == ["--write-configmap"]:
        (K8S / "configmap.yaml").write_text(configmap_text())
        print("wrote deploy/kubernetes/configmap.yaml")
        return 0
    for name in ["hadolint", "docker-compose", "check-jsonschema", "kubernetes-validate",
                 "shellcheck", "openapi-spec-validator"]:
        if not tool(name):
            print(f"{name} not found: run `make setup` (installs target/deploy-tools)")
            return 1
    config = shipped_config()
    image_cmd = check_docker(config)
    check_compose(image_cmd)
    check_kubernetes(config, image_cmd)
    check_systemd(config)
    check_scripts_and_ci()
    check_openapi()
    if failures:
        print(f"{len(failures)} deployment check(s) failed")
        return 1
    print("every deployment check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
