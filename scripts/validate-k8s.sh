#!/usr/bin/env bash
# Renders every kustomization under deploy/k8s (the base, the overlays, the load-test
# Job) with `kubectl kustomize` and validates every object, offline:
#
# - against the Kubernetes API schemas, strictly (unknown fields are errors), with
#   `kubernetes-validate` from PyPI, which bundles the schemas: oldest and newest
#   Kubernetes version we support (K8S_VERSIONS);
# - against our own rules (scripts/check-k8s.py): resources, probes, grace periods that
#   cover the drain, the router list matching the routers' replicas.
#
# Installs what it needs when missing: kubectl (Debian's package is `kubernetes-client`,
# kubectl 1.20 with kustomize 2.0; the manifests render the same with newer kubectl) and
# kubernetes-validate in a virtualenv under ~/.cache/switchboard. Called by scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
VALIDATOR_VERSION=1.37.0
VENV=${SWITCHBOARD_K8S_VENV:-$HOME/.cache/switchboard/k8s-venv}

if ! command -v kubectl >/dev/null 2>&1; then
    echo "scripts/validate-k8s.sh: installing kubectl (Debian package kubernetes-client)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$VALIDATOR_VERSION"; then
    echo "scripts/validate-k8s.sh: installing kubernetes-validate $VALIDATOR_VERSION (PyPI)" >&2
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q "kubernetes-validate==$VALIDATOR_VERSION"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for dir in deploy/k8s/base deploy/k8s/overlays/dev deploy/k8s/overlays/dev-redis-cluster \
    deploy/k8s/overlays/production deploy/k8s/loadtest; do
    name=$(echo "$dir" | tr / -)
    # Newer kubectl warns (on stderr) about `bases` and `patchesStrategicMerge`, kept so
    # that Debian's kubectl renders them too.
    if ! kubectl kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.err"; then
        echo "FAIL $dir: kubectl kustomize failed:" >&2
        grep -v '^# Warning' "$out/$name.err" >&2 || true
        status=1
        continue
    fi
    for version in $K8S_VERSIONS; do
        if ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/$name.yaml"; then
            echo "FAIL $dir: not valid for Kubernetes $version" >&2
            status=1
        fi
    done
    objects=$(grep -c '^kind:' "$out/$name.yaml" || true)
    echo "ok   $dir: $objects objects, valid for Kubernetes ${K8S_VERSIONS// /, } (strict)"
done
if ! "$VENV/bin/python" scripts/check-k8s.py "$out"/deploy-k8s-overlays-*.yaml "$out/deploy-k8s-base.yaml"; then
    status=1
fi
exit "$status"
