#!/usr/bin/env bash
# End-to-end check of the image and the Helm chart on a real cluster with nodes,
# for machines with Docker (make test covers the rest without one): create a kind
# cluster, build and load the image, install the chart, then drive Stan through its
# REST API: an API key, a task that fires, a heartbeat run. The cluster is deleted
# on exit unless KEEP_CLUSTER=1.
#
# Needs: docker, kind, kubectl, helm, curl, python3 (for JSON). Environment:
#   CLUSTER=stan-e2e  NAMESPACE=stan-system  RELEASE=stan  IMAGE=stan:e2e  KEEP_CLUSTER=
#   APIKEY_ARGS="--user e2e --scopes stan:execute"  (the key is the last line `stan apikey create` prints)
set -euo pipefail

CLUSTER=${CLUSTER:-stan-e2e}
NAMESPACE=${NAMESPACE:-stan-system}
RELEASE=${RELEASE:-stan}
IMAGE=${IMAGE:-stan:e2e}
read -r -a APIKEY_ARGS <<<"${APIKEY_ARGS:---user e2e --scopes stan:execute}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBECONFIG_FILE=$(mktemp)
export KUBECONFIG=$KUBECONFIG_FILE
PORT_FORWARD_PID=

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local status=$?
    if [[ -n $PORT_FORWARD_PID ]]; then
        kill "$PORT_FORWARD_PID" 2>/dev/null || true
    fi
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

for tool in docker kind kubectl helm curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is needed"
done

# json FIELD: read a JSON document on stdin, print one top-level field ('' when null or absent).
json() {
    python3 -c 'import json, sys; value = json.load(sys.stdin).get(sys.argv[1]); print("" if value is None else value)' "$1"
}

log "creating the kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 120s

log "building $IMAGE and loading it into the cluster"
docker build --tag "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing the chart as $RELEASE in $NAMESPACE"
helm install "$RELEASE" "$ROOT/charts/stan" --namespace "$NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --set fullnameOverride="$RELEASE" --wait --timeout 5m
helm test "$RELEASE" --namespace "$NAMESPACE" --timeout 2m

log "creating an API key (with the kind cluster's admin credentials, as an operator of Stan would)"
make -C "$ROOT" install >/dev/null
KEY=$(STAN_NAMESPACE="$NAMESPACE" "$ROOT/.venv/bin/stan" apikey create "${APIKEY_ARGS[@]}" | tail -n 1)
[[ -n $KEY ]] || fail "stan apikey create printed no key"

log "port-forwarding the API"
LOCAL_PORT=18080
kubectl -n "$NAMESPACE" port-forward "service/$RELEASE-api" "$LOCAL_PORT:80" >/dev/null &
PORT_FORWARD_PID=$!
URL=http://127.0.0.1:$LOCAL_PORT
for _ in $(seq 30); do
    curl --silent --fail "$URL/readyz" >/dev/null && break
    sleep 1
done
curl --silent --fail "$URL/readyz" >/dev/null || fail "the API is not ready through the port-forward"

api() {  # api METHOD PATH [BODY]: call the REST API with the key, print the body, fail on HTTP errors.
    curl --silent --show-error --fail-with-body -X "$1" -H "X-API-Key: $KEY" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "$URL$2"
}

log "creating a task that fires every minute"
TASK_ID=$(api POST /api/v1/stan/tasks \
    '{"name": "e2e", "schedule": "* * * * *", "action": "audit_workflows", "modelId": "model_e2e"}' | json id)
[[ -n $TASK_ID ]] || fail "the task has no id"

log "waiting for task $TASK_ID to fire (up to 3 minutes)"
LAST_RUN=
for _ in $(seq 90); do
    LAST_RUN=$(api GET "/api/v1/stan/tasks/$TASK_ID" | json lastRunAt)
    [[ -n $LAST_RUN ]] && break
    sleep 2
done
[[ -n $LAST_RUN ]] || fail "task $TASK_ID never ran"
log "task $TASK_ID ran at $LAST_RUN"

log "running the heartbeat"
api POST /api/v1/stan/heartbeat/run '{}'
echo

log "the leader: $(kubectl -n "$NAMESPACE" get lease stan-operator -o jsonpath='{.spec.holderIdentity}')"
log "end-to-end check passed"
