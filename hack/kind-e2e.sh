#!/usr/bin/env bash
# End-to-end check of the image and the Helm chart on a real cluster with nodes,
# for machines with Docker: create a kind cluster, build and load the image, install
# the chart, run `helm test` and the smoke test (hack/smoke.py: an API key, the
# webhook's refusal, a task that fires, a heartbeat run). The same smoke test runs
# without Docker against the local cluster's node (tests/test_chart_install.py), so
# what this script checks is also checked wherever `make test` runs as root. The
# cluster is deleted on exit unless KEEP_CLUSTER=1.
#
# Needs: docker, kind, kubectl, helm, make, python3. Environment:
#   CLUSTER=stan-e2e  NAMESPACE=stan-system  RELEASE=stan  IMAGE=stan:e2e  KEEP_CLUSTER=
#   SMOKE_USER=e2e  (the smoke test's API key is this user's; its tenant is stan-SMOKE_USER)
set -euo pipefail

CLUSTER=${CLUSTER:-stan-e2e}
NAMESPACE=${NAMESPACE:-stan-system}
RELEASE=${RELEASE:-stan}
IMAGE=${IMAGE:-stan:e2e}
SMOKE_USER=${SMOKE_USER:-e2e}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECONFIG_FILE=$(mktemp)
export KUBECONFIG=$KUBECONFIG_FILE

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local status=$?
    if (( status != 0 )); then
        log "failed; recent operator and API logs:"
        kubectl -n "$NAMESPACE" logs "deploy/$RELEASE-operator" --tail=50 2>/dev/null || true
        kubectl -n "$NAMESPACE" logs "deploy/$RELEASE-api" --tail=50 2>/dev/null || true
    fi
    if [[ -z ${KEEP_CLUSTER:-} ]]; then
        log "deleting the kind cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
        rm -f "$KUBECONFIG_FILE"
    else
        log "keeping the cluster $CLUSTER (KUBECONFIG=$KUBECONFIG_FILE)"
    fi
    exit "$status"
}
trap cleanup EXIT

for tool in docker kind kubectl helm make python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done

log "creating the kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 120s

log "building $IMAGE and loading it into the cluster"
docker build --tag "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing the chart as $RELEASE in $NAMESPACE"
helm install "$RELEASE" "$ROOT/charts/stan" --namespace "$NAMESPACE" --create-namespace \
    --values "$ROOT/hack/smoke-values.yaml" --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    --set fullnameOverride="$RELEASE" --wait --timeout 5m
helm test "$RELEASE" --namespace "$NAMESPACE" --timeout 2m

log "the smoke test (with the kind cluster's admin credentials, as an operator of Stan would)"
make -C "$ROOT" install >/dev/null
"$ROOT/.venv/bin/python" "$ROOT/hack/smoke.py" --namespace "$NAMESPACE" --api-service "$RELEASE-api" \
    --user "$SMOKE_USER"

log "the leader: $(kubectl -n "$NAMESPACE" get lease stan-operator -o jsonpath='{.spec.holderIdentity}')"
log "end-to-end check passed"
