#!/usr/bin/env bash
# A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback,
# built from Go modules at one pinned release, for tests that need a real API server: CRD
# validation, RBAC, admission, the Job controller and the garbage collector. There is no
# kubelet and no scheduler: Pods are created (by the Job controller, say) and stay Pending.
#
#   scripts/control-plane.sh build    build the three binaries into target/control-plane/bin
#                                     (skipped when they exist and the Go module files they were
#                                     built from are unchanged: see the stamp file there)
#   scripts/control-plane.sh start    build, make the PKI once (target/control-plane/pki), start
#                                     the three components on free loopback ports with a fresh
#                                     etcd, write target/control-plane/admin.kubeconfig and wait
#                                     until the apiserver's /readyz and the controller manager's
#                                     /healthz are ok and the "default" ServiceAccount exists;
#                                     then print the `env` lines (so `eval "$(... start)"` works)
#   scripts/control-plane.sh stop     end exactly the processes that start started (pid files),
#                                     wait for them; does nothing when nothing runs
#   scripts/control-plane.sh env      print `export KUBECONFIG=...` etc. for eval
#   scripts/control-plane.sh status   say which components run
#   scripts/control-plane.sh sa-kubeconfig NAMESPACE SERVICEACCOUNT OUT [DURATION]
#                                     write a kubeconfig at OUT that authenticates as the
#                                     ServiceAccount with a token from the TokenRequest API
#                                     (`kubectl create token`; DURATION defaults to 24h)
#
# Sources: scripts/control-plane/kube/go.mod pins k8s.io/kubernetes (and replaces each of its
# staging modules with the matching v0.N.x release); scripts/control-plane/etcd/ wraps
# go.etcd.io/etcd/server/v3's etcdmain at the etcd version that release requires. Builds use
# Go's default module and build caches and go.sum as committed (-mod=readonly).
#
# Environment: MINION_CP_DIR (default target/control-plane), MINION_CP_TIMEOUT (seconds per
# wait step, default 180), MINION_CP_APISERVER_PORT / MINION_CP_ETCD_PORT / MINION_CP_KCM_PORT
# (default: free ports picked at start), MINION_TOOLS_DIR (kubectl; default target/tools).
# Logs: target/control-plane/run/logs/{etcd,kube-apiserver,kube-controller-manager}.log.
# Progress goes to stderr; only `export` lines go to stdout (start, env).
# See docs/control-plane.md.
set -euo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD

SRC=$ROOT/scripts/control-plane
CP=${MINION_CP_DIR:-$ROOT/target/control-plane}
BIN=$CP/bin
PKI=$CP/pki
RUN=$CP/run
LOGS=$RUN/logs
TIMEOUT=${MINION_CP_TIMEOUT:-180}
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
# Pods and Services get addresses from these ranges only in etcd: nothing is ever sent there.
SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1

say() { printf 'control-plane: %s\n' "$*" >&2; }
die() { printf 'control-plane: FAILED: %s\n' "$*" >&2; exit 1; }

# The Kubernetes release, from the pinned go.mod (e.g. v1.37.2).
k8s_version() {
  sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[^ ]+).*/\2/p' "$SRC/kube/go.mod"
}

# --- build ------------------------------------------------------------------------------------
build_stamp() {
  local v
  v=$(k8s_version)
  {
    go version
    echo "flags: CGO_ENABLED=0 -trimpath $v"
    cat "$SRC/kube/go.mod" "$SRC/kube/go.sum" "$SRC/etcd/go.mod" "$SRC/etcd/go.sum" "$SRC/etcd/main.go"
  } | sha256sum | cut -d' ' -f1
}

cmd_build() {
  command -v go >/dev/null || die "build: go is not on PATH"
  local stamp v minor
  stamp=$(build_stamp)
  if [[ -x "$BIN/etcd" && -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" \
        && "$(cat "$BIN/.stamp" 2>/dev/null)" == "$stamp" ]]; then
    say "build: up to date ($BIN)"
    return
  fi
  v=$(k8s_version)
  [[ "$v" =~ ^v1\.([0-9]+)\. ]] || die "build: cannot read the k8s.io/kubernetes version from $SRC/kube/go.mod"
  minor=${BASH_REMATCH[1]}
  mkdir -p "$BIN"
  rm -f "$BIN/.stamp"
  # -mod=readonly: go.sum as committed is checked, nothing is resolved anew. No cgo: static
  # binaries, as the Kubernetes release builds them.
  export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  local t0=$SECONDS
  say "build: etcd (go.etcd.io/etcd/server/v3 $(sed -nE 's/^(require)?[[:space:]]*go\.etcd\.io\/etcd\/server\/v3 (v[^ ]+).*/\2/p' "$SRC/etcd/go.mod"))"
  (cd "$SRC/etcd" && go build -trimpath -ldflags '-s -w' -o "$BIN/etcd.part" .) || die "build: etcd"
  mv -f "$BIN/etcd.part" "$BIN/etcd"
  say "build: kube-apiserver and kube-controller-manager (k8s.io/kubernetes $v); a cold build takes long"
  # The version the binaries report (kubectl version, /version), as the release build sets it.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  rm -rf "$BIN/kube.part" && mkdir -p "$BIN/kube.part"
  (cd "$SRC/kube" && go build -trimpath -ldflags "$ldflags" -o "$BIN/kube.part/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) \
    || die "build: kube-apiserver / kube-controller-manager"
  mv -f "$BIN/kube.part/kube-apiserver" "$BIN/kube.part/kube-controller-manager" "$BIN/"
  rmdir "$BIN/kube.part"
  echo "$stamp" >"$BIN/.stamp"
  say "build: done in $((SECONDS - t0))s ($BIN)"
}

# --- PKI --------------------------------------------------------------------------------------
# One CA signs the apiserver's serving cert and every client cert; a second CA for the
# front proxy (aggregation layer); an RSA key pair signs ServiceAccount tokens. Made once.
make_cert() { # NAME SUBJECT EXT_FILE_OR_EMPTY [CA_PREFIX]
  local name=$1 subj=$2 ext=$3 ca=${4:-ca}
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -sha256 -out "$PKI/$name.crt" ${ext:+-extfile "$ext"} 2>/dev/null
  rm -f "$PKI/$name.csr"
}

make_ca() { # NAME CN
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature \
    -out "$PKI/$1.crt" 2>/dev/null
}

ensure_pki() {
  [[ -s "$PKI/.done" ]] && return
  command -v openssl >/dev/null || die "pki: openssl is not on PATH"
  say "pki: making a CA and certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  make_ca ca minion-control-plane-ca
  make_ca front-proxy-ca minion-front-proxy-ca
  cat >"$PKI/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
  cat >"$PKI/client.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
  make_cert apiserver "/CN=kube-apiserver" "$PKI/server.ext"
  make_cert admin "/O=system:masters/CN=minion-admin" "$PKI/client.ext"
  make_cert controller-manager "/CN=system:kube-controller-manager" "$PKI/client.ext"
  make_cert front-proxy-client "/CN=front-proxy-client" "$PKI/client.ext" front-proxy-ca
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  chmod 600 "$PKI"/*.key
  date -u +%FT%TZ >"$PKI/.done"
}

# --- processes --------------------------------------------------------------------------------
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

# True when the pid file names a live process that runs our binary (not a reused pid).
running() {
  local pid
  pid=$(pid_of "$1")
  [[ -n "$pid" && -d /proc/$pid ]] || return 1
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$BIN/$1" ]]
}

launch() { # NAME ARGS...
  local name=$1; shift
  # setsid: its own session, so a signal to the caller's terminal or process group does not
  # reach it; `stop` ends it by its pid. setsid execs (no fork) in a non-interactive script.
  setsid "$BIN/$name" "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  sleep 0.2
  running "$name" || fail_step "$name: did not start" "$name"
}

fail_step() { # MESSAGE COMPONENT
  printf 'control-plane: FAILED: %s\n' "$1" >&2
  if [[ -f "$LOGS/$2.log" ]]; then
    printf -- '--- last 40 lines of %s\n' "$LOGS/$2.log" >&2
    tail -n 40 "$LOGS/$2.log" >&2
    printf -- '---\n' >&2
  fi
  cmd_stop
  exit 1
}

# Waits until CHECK (a command) succeeds; fails naming STEP when COMPONENT dies or time is up.
wait_for() { # STEP COMPONENT CHECK...
  local step=$1 component=$2; shift 2
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    running "$component" || fail_step "$step: $component exited (see $LOGS/$component.log)" "$component"
    ((SECONDS < deadline)) || fail_step "$step: not ready after ${TIMEOUT}s (MINION_CP_TIMEOUT)" "$component"
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_kubeconfig() { # OUT SERVER USER AUTH_YAML_LINES
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: minion-control-plane
    cluster:
      server: $2
      certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
  - name: $3
    user:
$4
contexts:
  - name: $3@minion-control-plane
    context: {cluster: minion-control-plane, user: $3, namespace: default}
current-context: $3@minion-control-plane
EOF
  chmod 600 "$1"
}

cert_auth() { # NAME -> user lines for a client cert
  printf '      client-certificate-data: %s\n      client-key-data: %s' \
    "$(base64 -w0 <"$PKI/$1.crt")" "$(base64 -w0 <"$PKI/$1.key")"
}

curl_api() { # PATH: GET on the apiserver as admin; fails unless the body is "ok"
  [[ "$(curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
         "$APISERVER$1")" == ok ]]
}

etcd_healthy() { curl -sf --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
kcm_healthy() { [[ "$(curl -sfk --max-time 5 "https://127.0.0.1:$KCM_PORT/healthz")" == ok ]]; }
default_sa_exists() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "$APISERVER/api/v1/namespaces/default/serviceaccounts/default" >/dev/null
}

cmd_start() {
  local c all=1 any=0
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then any=1; else all=0; fi
  done
  if ((all)); then
    say "start: already running ($(sed -n 's/^export MINION_CONTROL_PLANE_SERVER=//p' "$RUN/env"))"
    cat "$RUN/env"
    return
  fi
  ((any)) && { say "start: some components run, others not: stopping them first"; cmd_stop; }
  command -v curl >/dev/null || die "start: curl is not on PATH"
  cmd_build
  ensure_pki
  local t0=$SECONDS
  # A fresh cluster each start: etcd's data and the logs of the last run go.
  rm -rf "$RUN" && mkdir -p "$LOGS" "$RUN/apiserver-certs" && mkdir -m 700 "$RUN/etcd"
  # Interrupted half way: end what was started.
  trap 'cmd_stop; exit 130' INT TERM
  ETCD_PORT=${MINION_CP_ETCD_PORT:-$(free_port)}
  local etcd_peer_port
  etcd_peer_port=$(free_port)
  local api_port=${MINION_CP_APISERVER_PORT:-$(free_port)}
  KCM_PORT=${MINION_CP_KCM_PORT:-$(free_port)}
  APISERVER=https://127.0.0.1:$api_port
  cat >"$RUN/env" <<EOF
export KUBECONFIG=$CP/admin.kubeconfig
export MINION_CONTROL_PLANE=1
export MINION_CONTROL_PLANE_SERVER=$APISERVER
export MINION_CONTROL_PLANE_DIR=$CP
EOF

  say "start: etcd on 127.0.0.1:$ETCD_PORT"
  # --unsafe-no-fsync: a throwaway test cluster; fsync on every write only slows tests down.
  launch etcd --name=minion --data-dir="$RUN/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="minion=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --log-level=warn
  wait_for "etcd /health" etcd etcd_healthy

  say "start: kube-apiserver on $APISERVER"
  # --endpoint-reconciler-type=none: the lease reconciler refuses a loopback advertise address
  # (Endpoints may not point into 127.0.0.0/8), so the "kubernetes" Service gets no endpoints;
  # nothing in this cluster runs Pods that would use it.
  launch kube-apiserver \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --endpoint-reconciler-type=none \
    --cert-dir="$RUN/apiserver-certs" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true
  wait_for "kube-apiserver /readyz" kube-apiserver curl_api /readyz
  write_kubeconfig "$CP/admin.kubeconfig" "$APISERVER" minion-admin "$(cert_auth admin)"
  write_kubeconfig "$RUN/controller-manager.kubeconfig" "$APISERVER" system:kube-controller-manager \
    "$(cert_auth controller-manager)"

  say "start: kube-controller-manager (health on 127.0.0.1:$KCM_PORT)"
  launch kube-controller-manager \
    --kubeconfig="$RUN/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$RUN/kcm-certs" \
    --controllers='*' --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --leader-elect=false
  wait_for "kube-controller-manager /healthz" kube-controller-manager kcm_healthy
  # The ServiceAccount admission plugin rejects Pods until their namespace's "default"
  # ServiceAccount exists; the controller manager's serviceaccount controller makes it.
  wait_for "ServiceAccount default/default (made by the controller manager)" kube-controller-manager default_sa_exists
  trap - INT TERM
  say "start: ready in $((SECONDS - t0))s"
  cat "$RUN/env"
}

cmd_stop() {
  local c pid i
  for c in kube-controller-manager kube-apiserver etcd; do
    if running "$c"; then
      pid=$(pid_of "$c")
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
      done
      if [[ -d /proc/$pid ]]; then
        say "stop: $c ($pid) still runs after 15s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while [[ -d /proc/$pid ]]; do sleep 0.1; done
      fi
      say "stop: $c ($pid) stopped"
    fi
    rm -f "$RUN/$c.pid"
  done
}

cmd_status() {
  local c rc=0
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: not running"; rc=1; fi
  done
  return $rc
}

cmd_env() {
  if ! running kube-apiserver || [[ ! -f "$RUN/env" ]]; then
    die "env: not running (scripts/control-plane.sh start)"
  fi
  cat "$RUN/env"
}

# kubectl from the same npm package as scripts/helm-check.sh (scripts/lib/tools.sh).
cmd_sa_kubeconfig() {
  (($# == 3 || $# == 4)) || die "usage: $0 sa-kubeconfig NAMESPACE SERVICEACCOUNT OUT [DURATION]"
  local ns=$1 sa=$2 out=$3 duration=${4:-24h} token server
  [[ "$out" == /* ]] || out=$CALLER_PWD/$out
  running kube-apiserver || die "sa-kubeconfig: the control plane is not running"
  TOOLS=${MINION_TOOLS_DIR:-$ROOT/target/tools}
  # shellcheck source=scripts/lib/tools.sh
  source "$ROOT/scripts/lib/tools.sh"
  install_tools
  token=$("$TOOLS/bin/kubectl" --kubeconfig "$CP/admin.kubeconfig" create token "$sa" -n "$ns" \
    --duration="$duration") || die "sa-kubeconfig: kubectl create token $sa -n $ns"
  server=$(sed -n 's/^export MINION_CONTROL_PLANE_SERVER=//p' "$RUN/env")
  mkdir -p "$(dirname "$out")"
  write_kubeconfig "$out" "$server" "system:serviceaccount:$ns:$sa" "      token: $token"
  # The namespace of the context is the ServiceAccount's, as in a Pod.
  sed -i "s/user: system:serviceaccount:$ns:$sa, namespace: default}/user: system:serviceaccount:$ns:$sa, namespace: $ns}/" "$out"
  say "sa-kubeconfig: $out (ServiceAccount $ns/$sa, token for $duration)"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) cmd_status ;;
  sa-kubeconfig) shift; cmd_sa_kubeconfig "$@" ;;
  *) die "usage: $0 build|start|stop|env|status|sa-kubeconfig NAMESPACE SERVICEACCOUNT OUT [DURATION]" ;;
esac
