"""Our own rules for the rendered Kubernetes manifests (scripts/validate-k8s.sh), the
ones a schema cannot know:

- every container of a Switchboard workload has CPU and memory requests, a memory limit,
  readiness and liveness probes, and runs as non-root without privilege escalation;
- each role's terminationGracePeriodSeconds covers its drain (gateways: the
  SWITCHBOARD_DRAIN_SECS of their ConfigMap + 5 s for the router links and presence;
  routers 7 s; storage 10 s), so Kubernetes never kills a drain half-way;
- SWITCHBOARD_ROUTERS names exactly the router StatefulSet's pods
  (switchboard-router-0 .. N-1 behind its headless Service), since every gateway must
  link to every router;
- attachments: the gateways and the storage role name the same store
  (SWITCHBOARD_ATTACHMENTS, from the ConfigMap or their own env), an s3:// bucket (a
  directory would be each pod's own), and an Ingress in front lets bodies of
  SWITCHBOARD_MAX_ATTACHMENT_BYTES through (ingress-nginx's proxy-body-size).

Usage: check-k8s.py RENDERED.yaml...  Exit status 1 on any violation.
"""

import sys

import yaml

# Role -> seconds its drain may take after SIGTERM, without the configurable part.
DRAIN = {"storage": 10, "router": 7, "gateway": 5}
# switchboard_protocol::DEFAULT_MAX_ATTACHMENT_BYTES
DEFAULT_MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


def env_of(container, config, name):
    """The value `name` has in the container: its own env, else the ConfigMap it reads."""
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    reads_config = any(
        source.get("configMapRef", {}).get("name") == "switchboard-config" for source in container.get("envFrom", [])
    )
    return config.get(name) if reads_config else None


def nginx_size(text):
    """ingress-nginx's size syntax (`1m`, `512k`, `1048576`) in bytes; 0 means no limit."""
    text = str(text).strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def check_attachments(docs, config):
    problems = []
    stores = {}
    limit = DEFAULT_MAX_ATTACHMENT_BYTES
    for d in docs:
        role = d["metadata"]["name"].removeprefix("switchboard-")
        if d["kind"] != "Deployment" or role not in ("gateway", "storage"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            stores[role] = env_of(c, config, "SWITCHBOARD_ATTACHMENTS")
            if role == "gateway":
                limit = int(env_of(c, config, "SWITCHBOARD_MAX_ATTACHMENT_BYTES") or limit)
    if stores.get("gateway") != stores.get("storage"):
        problems.append(
            f"SWITCHBOARD_ATTACHMENTS differs: gateways {stores.get('gateway')!r}, storage {stores.get('storage')!r}"
            " (storage deletes the files retention removes)"
        )
    store = stores.get("gateway")
    if not store:
        return problems
    if not store.startswith("s3://"):
        problems.append(f"SWITCHBOARD_ATTACHMENTS {store!r}: pods need one shared s3:// bucket, not a directory")
    for d in docs:
        if d["kind"] != "Ingress":
            continue
        size = d["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")
        allowed = nginx_size(size)
        if allowed != 0 and allowed < limit:
            problems.append(
                f"Ingress {d['metadata']['name']}: proxy-body-size {size} is below"
                f" SWITCHBOARD_MAX_ATTACHMENT_BYTES {limit}: uploads would fail at the proxy"
            )
    return problems


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    problems = []
    config = next(
        (d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "switchboard-config"),
        {},
    )
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = d["metadata"]["name"]
        role = name.removeprefix("switchboard-")
        if role not in DRAIN:
            continue  # the dev overlay's Redis and PostgreSQL
        spec = d["spec"]["template"]["spec"]
        grace = spec.get("terminationGracePeriodSeconds", 30)
        need = DRAIN[role] + (int(config.get("SWITCHBOARD_DRAIN_SECS", "10")) if role == "gateway" else 0)
        if grace < need:
            problems.append(f"{name}: terminationGracePeriodSeconds {grace} < drain {need} s")
        pod_security = spec.get("securityContext", {})
        for c in spec["containers"]:
            where = f"{name}/{c['name']}"
            requests = c.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= requests.keys():
                problems.append(f"{where}: needs cpu and memory requests")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                problems.append(f"{where}: needs a memory limit")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{where}: needs a {probe}")
            security = c.get("securityContext", {})
            if not (pod_security.get("runAsNonRoot") or security.get("runAsNonRoot")):
                problems.append(f"{where}: must run as non-root")
            if security.get("allowPrivilegeEscalation", True):
                problems.append(f"{where}: must set allowPrivilegeEscalation: false")
    routers = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "switchboard-router"]
    if routers and "SWITCHBOARD_ROUTERS" in config:
        replicas = routers[0]["spec"].get("replicas", 1)
        service = routers[0]["spec"]["serviceName"]
        want = [f"http://switchboard-router-{i}.{service}:7200" for i in range(replicas)]
        have = config["SWITCHBOARD_ROUTERS"].split(",")
        if have != want:
            problems.append(f"SWITCHBOARD_ROUTERS {have} must list the {replicas} routers: {want}")
    problems += check_attachments(docs, config)
    return problems


def main():
    failed = False
    for path in sys.argv[1:]:
        for problem in check(path):
            print(f"FAIL {path}: {problem}", file=sys.stderr)
            failed = True
    if not failed:
        print(
            f"ok   our rules (resources, probes, grace periods, router list, attachments): {len(sys.argv) - 1} renderings"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
