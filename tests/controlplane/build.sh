#!/usr/bin/env bash
# Build (or reuse) the binaries of the tier-3 cluster tests from published Go
# modules through the Go module proxy, never from a git clone:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler  (go/ wrapper module)
#   ray-operator (KubeRay) + its CRDs, every KUBERAY_VERSIONS entry  (generated wrapper modules)
#   kubelet, kube-proxy (the real test node)                        (go/ wrapper module)
#   kube-apiserver of the oldest Kubernetes the chart claims        (go-oldest/ wrapper module)
#   coredns with the plugins cluster DNS needs                      (go/coredns wrapper module)
#   kwok + its default stages, helm                                 (go install @version)
#   fake-gcs-server, the engine tests' GCS emulator                 (go install @version)
#
# Output: ${GENEVA_CACHE:-$HOME/.cache/geneva-operator}/bin/<component>-<version>/
# Each directory appears only once complete (built in a temp dir, then renamed),
# so a rerun with the same pins returns in seconds. The default GOMODCACHE and
# GOCACHE are used, so rebuilding after a version bump is incremental.
#
# Usage: tests/controlplane/build.sh [component ...]
#   components: etcd kubernetes node coredns kuberay kwok helm fake-gcs-server
#               kubernetes-oldest (default: all)
# Env: GENEVA_CACHE, GO (go binary), BUILD_PARALLELISM (go build -p, default 2)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

GO="${GO:-go}"
P="${BUILD_PARALLELISM:-2}"
cache="${GENEVA_CACHE:-$HOME/.cache/geneva-operator}"
bindir="$cache/bin"
mkdir -p "$bindir"

# -trimpath: reproducible binaries; it is part of the build cache key, so it
# caches just as well as long as it is always passed (it is, here).
# -s -w: drop symbol tables/DWARF (kube-apiserver goes from ~130 MB to ~90 MB).
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
export CGO_ENABLED=0

# Temp dirs of builds that did not finish are removed on exit.
tmpdirs=()
trap 'for d in "${tmpdirs[@]}"; do [[ -d "$d" ]] && rm -rf "$d"; done' EXIT
newtmp() { # newtmp NAME -> a fresh temp dir under $bindir (sets $tmp)
    tmp=$(mktemp -d "$bindir/.$1.XXXXXX")
    tmpdirs+=("$tmp")
}

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# timed NAME CMD...: run CMD and report its wall time.
timed() {
    local name="$1"; shift
    local t0 t1
    t0=$(date +%s)
    "$@"
    t1=$(date +%s)
    log "$name built in $((t1 - t0))s"
}

# finish TMPDIR FINALDIR: atomically publish a completed build.
finish() {
    chmod 755 "$1"
    rm -rf "$2"
    mv "$1" "$2"
}

moddir() { # moddir MODULE@VERSION -> directory of the module in GOMODCACHE
    "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

check_wrapper_pins() {
    local k e
    k=$(cd "$here/go" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
    e=$(cd "$here/go" && "$GO" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
    if [[ "$k" != "$KUBERNETES_VERSION" || "$e" != "$ETCD_VERSION" ]]; then
        log "go/go.mod pins kubernetes=$k etcd=$e but versions.env says $KUBERNETES_VERSION/$ETCD_VERSION"
        exit 1
    fi
}

build_etcd() {
    local out="$bindir/etcd-$ETCD_VERSION"
    [[ -x "$out/etcd" ]] && { log "etcd $ETCD_VERSION cached"; return; }
    check_wrapper_pins
    local tmp; newtmp etcd
    (cd "$here/go" && "$GO" build -p "$P" -ldflags "-s -w" -o "$tmp/etcd" ./etcd)
    finish "$tmp" "$out"
}

k8s_ldflags() { # the version stamps `kubectl version` and the components report
    local v="${KUBERNETES_VERSION#v}" major minor
    major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
    local ld="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$ld"
}

# build_k8s_cmds OUTDIR CMD...: k8s.io/kubernetes/cmd/<CMD> from the wrapper module into OUTDIR.
build_k8s_cmds() {
    local out="$1"; shift
    local c missing=0
    for c in "$@"; do [[ -x "$out/$c" ]] || missing=1; done
    if [[ $missing -eq 0 ]]; then log "$(basename "$out") cached"; return; fi
    check_wrapper_pins
    local ld; ld=$(k8s_ldflags)
    local tmp; newtmp "$(basename "$out")"
    for c in "$@"; do
        timed "$c" bash -c "cd '$here/go' && '$GO' build -p '$P' -ldflags '$ld' -o '$tmp/$c' k8s.io/kubernetes/cmd/$c"
    done
    finish "$tmp" "$out"
}

build_kubernetes() {
    build_k8s_cmds "$bindir/kubernetes-$KUBERNETES_VERSION" kube-apiserver kube-controller-manager kube-scheduler
}

# The real node of the pods tier (kept apart so the control plane alone stays cached).
build_node() {
    build_k8s_cmds "$bindir/kubernetes-node-$KUBERNETES_VERSION" kubelet kube-proxy
}

# kube-apiserver alone, of the oldest minor the chart's kubeVersion admits:
# tests/packaging/test_oldest_kubernetes.py checks the chart and the CRD's CEL rules on it. It
# runs on the etcd above (a 3.5 client on a 3.6 server), so no second etcd. Stamped with its own
# version: helm's kubeVersion check reads it.
build_kubernetes_oldest() {
    local out="$bindir/kube-apiserver-$OLDEST_KUBERNETES_VERSION"
    [[ -x "$out/kube-apiserver" ]] && { log "kube-apiserver $OLDEST_KUBERNETES_VERSION cached"; return; }
    local v; v=$(cd "$here/go-oldest" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
    if [[ "$v" != "$OLDEST_KUBERNETES_VERSION" ]]; then
        log "go-oldest/go.mod pins kubernetes=$v but versions.env says $OLDEST_KUBERNETES_VERSION"; exit 1
    fi
    local ld; ld=$(KUBERNETES_VERSION="$OLDEST_KUBERNETES_VERSION" k8s_ldflags)
    local tmp; newtmp kube-apiserver-oldest
    (cd "$here/go-oldest" && "$GO" build -p "$P" -ldflags "$ld" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
    finish "$tmp" "$out"
}

build_coredns() {
    local out="$bindir/coredns-$COREDNS_VERSION"
    [[ -x "$out/coredns" ]] && { log "coredns $COREDNS_VERSION cached"; return; }
    local mod=github.com/coredns/coredns v
    v=$(cd "$here/go/coredns" && "$GO" list -m -f '{{.Version}}' "$mod")
    if [[ "$v" != "$COREDNS_VERSION" ]]; then
        log "go/coredns/go.mod pins coredns=$v but versions.env says $COREDNS_VERSION"; exit 1
    fi
    local tmp; newtmp coredns
    (cd "$here/go/coredns" && "$GO" build -p "$P" -ldflags "-s -w" -o "$tmp/coredns" .)
    finish "$tmp" "$out"
}

# One KubeRay operator per version in KUBERAY_VERSIONS (the compatibility matrix).
# Each is built from a wrapper module generated here: `go install ...ray-operator@version`
# does not work because the module proxy answers 403 for this module's version list, which
# `go install` reads to look for a deprecation notice. The wrapper requires nothing but
# ray-operator, so its build list is exactly KubeRay's own (minimal version selection from
# one root), and the checksum database checks every module as for a committed go.sum.
# All versions share GOMODCACHE and GOCACHE: packages of equal module versions compile once.
build_kuberay() {
    local v
    for v in ${KUBERAY_VERSIONS//,/ }; do
        timed "kuberay $v" build_kuberay_version "$v"
    done
}

build_kuberay_version() { # build_kuberay_version VERSION
    local version="$1" out="$bindir/kuberay-$1"
    [[ -x "$out/ray-operator" && -f "$out/crds/ray.io_rayclusters.yaml" ]] && { log "kuberay $version cached"; return; }
    local mod=github.com/ray-project/kuberay/ray-operator
    local tmp; newtmp "kuberay-$version"
    local wrapper="$tmp/wrapper"
    mkdir -p "$wrapper"
    printf 'module geneva-operator/kuberay-wrapper\n\ngo 1.24.0\n\nrequire %s %s\n' "$mod" "$version" > "$wrapper/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$mod" > "$wrapper/tools.go"
    (cd "$wrapper" && "$GO" mod tidy && "$GO" build -p "$P" -ldflags "-s -w" -o "$tmp/ray-operator" "$mod")
    # RayCluster/RayJob/RayService CRDs from the module (the operator watches all three).
    local src; src=$(cd "$wrapper" && "$GO" list -m -f '{{.Dir}}' "$mod")
    mkdir -p "$tmp/crds"
    cp "$src"/config/crd/bases/*.yaml "$tmp/crds/"
    chmod u+w "$tmp"/crds/*.yaml
    rm -rf "$wrapper"
    finish "$tmp" "$out"
}

build_kwok() {
    local out="$bindir/kwok-$KWOK_VERSION"
    [[ -x "$out/kwok" && -d "$out/stages" ]] && { log "kwok $KWOK_VERSION cached"; return; }
    local mod="sigs.k8s.io/kwok@$KWOK_VERSION"
    local tmp; newtmp kwok
    GOBIN="$tmp" "$GO" install -p "$P" -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    # kwok's default stages (the ones it embeds and uses when given none):
    # node-initialize + node-heartbeat (leases are renewed separately) and the
    # "fast" pod stages (ready/complete/delete). The harness passes these
    # copies explicitly via --config so the pod/node lifecycle is visible and
    # can be swapped per test.
    local src; src=$(moddir "$mod")
    mkdir -p "$tmp/stages"
    cp "$src"/kustomize/stage/node/fast/node-initialize.yaml \
       "$src"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
       "$src"/kustomize/stage/pod/fast/pod-ready.yaml \
       "$src"/kustomize/stage/pod/fast/pod-complete.yaml \
       "$src"/kustomize/stage/pod/fast/pod-delete.yaml \
       "$tmp/stages/"
    chmod u+w "$tmp"/stages/*.yaml
    finish "$tmp" "$out"
}

build_helm() {
    local out="$bindir/helm-$HELM_VERSION"
    [[ -x "$out/helm" ]] && { log "helm $HELM_VERSION cached"; return; }
    local tmp; newtmp helm
    GOBIN="$tmp" "$GO" install -p "$P" \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    finish "$tmp" "$out"
}

build_fake_gcs_server() {
    local out="$bindir/fake-gcs-server-$FAKE_GCS_SERVER_VERSION"
    [[ -x "$out/fake-gcs-server" ]] && { log "fake-gcs-server $FAKE_GCS_SERVER_VERSION cached"; return; }
    local tmp; newtmp fake-gcs-server
    GOBIN="$tmp" "$GO" install -p "$P" -ldflags "-s -w" "github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION"
    finish "$tmp" "$out"
}

components=("$@")
[[ ${#components[@]} -eq 0 ]] && components=(etcd kubernetes node coredns kuberay kwok helm fake-gcs-server kubernetes-oldest)
t_all=$(date +%s)
for c in "${components[@]}"; do
    case "$c" in
        etcd|kubernetes|node|coredns|kuberay|kwok|helm) timed "$c" "build_$c" ;;
        fake-gcs-server) timed "$c" build_fake_gcs_server ;;
        kubernetes-oldest) timed "$c" build_kubernetes_oldest ;;
        *) log "unknown component: $c"; exit 2 ;;
    esac
done
log "all done in $(( $(date +%s) - t_all ))s; binaries under $bindir"
