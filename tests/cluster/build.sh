#!/usr/bin/env bash
# Build a real Kubernetes control plane (kube-apiserver, kube-controller-manager
# v1.20.2) from Debian bookworm's `kubernetes` source package with Debian's Go
# 1.19, and fetch Debian's etcd. Everything lives in a cache dir outside the
# checkout; a second run only checks that the binaries exist.
#
# Usage: tests/cluster/build.sh            (ENVHUB_CLUSTER_CACHE overrides the cache dir)
# Prints the bin dir (containing kube-apiserver, kube-controller-manager, etcd) last.
set -euo pipefail

K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
# Upstream commit of the v1.20.2 tag (as official v1.20.2 binaries report it); the
# tarball has no .git to ask.
K8S_GIT_COMMIT="faecb196815e248d3ecfb03c680a4507229c2a56"
GO_PKG="golang-1.19"
ETCD_PKG="etcd-server"
REFLECT2_PKG="golang-github-modern-go-reflect2-dev"

CACHE="${ENVHUB_CLUSTER_CACHE:-/var/cache/envhub-testcluster}"
KEY="kubernetes-${K8S_DEB_VERSION}_${GO_PKG}_bookworm"
OUT="${CACHE}/${KEY}"            # the three binaries + VERSIONS (kept)
BIN="${CACHE}/bin"               # stable symlinks into OUT, used by cluster.py
SCRATCH="${CACHE}/build-${KEY}"  # deleted after a successful build
BINARIES=(kube-apiserver kube-controller-manager)

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have_all() {
    local b
    for b in "${BINARIES[@]}" etcd; do [[ -x "${OUT}/${b}" ]] || return 1; done
}

link_bin() {
    mkdir -p "${BIN}"
    local b
    for b in "${BINARIES[@]}" etcd; do ln -sfn "${OUT}/${b}" "${BIN}/${b}"; done
}

mkdir -p "${CACHE}"
if have_all; then
    link_bin
    log "cached binaries present in ${OUT}"
    echo "${BIN}"
    exit 0
fi

# Two concurrent runs (e.g. two pytest sessions) must not build into the same tree.
exec 9>"${CACHE}/.build.lock"
log "waiting for build lock ${CACHE}/.build.lock"
flock 9
if have_all; then link_bin; log "built by a concurrent run"; echo "${BIN}"; exit 0; fi

# Start from a clean scratch dir: a failed earlier run may have left a partial tree.
rm -rf "${SCRATCH}"
mkdir -p "${SCRATCH}"
trap 'rc=$?; [[ ${rc} -eq 0 ]] || log "FAILED (exit ${rc}); build tree left in ${SCRATCH} (the next run deletes it)"' EXIT
STAGE="${SCRATCH}/out"  # binaries collect here; moved to OUT only when all are built
mkdir -p "${STAGE}"

# --- apt: a private configuration, so the system's sources.list and lists stay untouched.
APT_DIR="${SCRATCH}/apt"
mkdir -p "${APT_DIR}/lists/partial" "${APT_DIR}/cache/archives/partial" "${APT_DIR}/parts"
cat >"${APT_DIR}/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb-src http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian bookworm-updates main
EOF
APT_OPTS=(
    -o "Dir::Etc::SourceList=${APT_DIR}/sources.list"
    -o "Dir::Etc::SourceParts=${APT_DIR}/parts"
    -o "Dir::State::Lists=${APT_DIR}/lists"
    -o "Dir::Cache=${APT_DIR}/cache"
    # Downloads land in root-owned dirs; the _apt sandbox user could not write there.
    -o "APT::Sandbox::User=root"
    -q
)
log "apt-get update (private sources list ${APT_DIR}/sources.list)"
apt-get "${APT_OPTS[@]}" update >"${SCRATCH}/apt-update.log" 2>&1 \
    || { cat "${SCRATCH}/apt-update.log" >&2; exit 1; }

DL="${SCRATCH}/downloads"
mkdir -p "${DL}"
log "downloading debs: ${GO_PKG}-go ${GO_PKG}-src ${ETCD_PKG} ${REFLECT2_PKG}"
(cd "${DL}" && apt-get "${APT_OPTS[@]}" download \
    "${GO_PKG}-go" "${GO_PKG}-src" "${ETCD_PKG}" "${REFLECT2_PKG}" >/dev/null)

ROOT="${SCRATCH}/root"  # unpacked debs (Go toolchain, etcd, reflect2)
mkdir -p "${ROOT}"
for deb in "${DL}"/*.deb; do
    log "unpacking $(basename "${deb}")"
    dpkg-deb -x "${deb}" "${ROOT}"
done

# --- etcd: just a static binary from the deb.
install -m 0755 "${ROOT}/usr/bin/etcd" "${STAGE}/etcd"
log "etcd: $("${STAGE}/etcd" --version | head -1)"

# --- kubernetes source. Only the orig tarball is used: Debian's three patches touch
# kubectl's printers (CVE-2021-25743), which neither binary built here links.
log "downloading source package kubernetes=${K8S_DEB_VERSION}"
(cd "${DL}" && apt-get "${APT_OPTS[@]}" source --download-only \
    "kubernetes=${K8S_DEB_VERSION}" >/dev/null)
GOPATH="${SCRATCH}/gopath"
SRC="${GOPATH}/src/k8s.io/kubernetes"
rm -rf "${GOPATH}"
mkdir -p "${SRC}"
log "unpacking source into ${SRC}"
tar -xzf "${DL}"/kubernetes_*.orig.tar.gz -C "${SRC}" --strip-components=1

# reflect2 1.0.1 (vendored) reads Go runtime internals that changed in Go 1.18 and
# panics at start; 1.0.2 is API-compatible.
log "replacing vendor/github.com/modern-go/reflect2 with 1.0.2"
R2="${SRC}/vendor/github.com/modern-go/reflect2"
rm -rf "${R2}"
mkdir -p "${R2}"
cp "${ROOT}/usr/share/gocode/src/github.com/modern-go/reflect2/"* "${R2}/"
rm -f "${R2}"/*_test.go "${R2}/go.mod"

# --- Go toolchain, from the unpacked debs (GOROOT/src is a relative symlink into
# usr/share/go-1.19, which the -src deb supplied).
export GOROOT="${ROOT}/usr/lib/go-1.19"
export PATH="${GOROOT}/bin:${PATH}"
export GOPATH GO111MODULE=off CGO_ENABLED=0 GOPROXY=off GOFLAGS=
export GOCACHE="${SCRATCH}/gocache" GOTMPDIR="${SCRATCH}/gotmp"
mkdir -p "${GOTMPDIR}"
log "go: $(go version)"
cd "${SRC}"

# --- pkg/generated/openapi is generated at build time upstream and so is missing from
# the tarball. Same package selection as Makefile.generated_files (KUBE target):
# Go dirs outside vendor/ (staging/src named as vendor/), files with a
# '+k8s:openapi-gen=' tag, minus code-generator and sample-apiserver.
log "building openapi-gen"
go build -o "${SCRATCH}/openapi-gen" k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen
log "finding packages tagged +k8s:openapi-gen="
OPENAPI_DIRS=$(
    find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) \
        -type f -name '*.go' -print0 \
        | xargs -0 grep -l '^// *+k8s:' \
        | xargs grep -l '+k8s:openapi-gen=' \
        | sed -e 's|^\./staging/src|vendor|' -e 's|^\./||' -e 's|/[^/]*$||' \
        | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
        | LC_ALL=C sort -u
)
log "generating pkg/generated/openapi/zz_generated.openapi.go ($(wc -l <<<"${OPENAPI_DIRS}") packages)"
"${SCRATCH}/openapi-gen" \
    --logtostderr \
    -i "$(sed 's|^|k8s.io/kubernetes/|' <<<"${OPENAPI_DIRS}" | paste -sd, -)" \
    -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "${SCRATCH}/openapi-violations.report" \
    >"${SCRATCH}/openapi-gen.log" 2>&1 \
    || { tail -50 "${SCRATCH}/openapi-gen.log" >&2; exit 1; }

# --- the binaries. In GOPATH mode vendored packages are named .../vendor/..., which
# is what -X has to match (as hack/lib/version.sh does).
VPKG=k8s.io/kubernetes/vendor/k8s.io
LDFLAGS="-s -w"
for pkg in component-base/version client-go/pkg/version; do
    LDFLAGS+=" -X ${VPKG}/${pkg}.gitVersion=${K8S_VERSION}"
    LDFLAGS+=" -X ${VPKG}/${pkg}.gitMajor=1 -X ${VPKG}/${pkg}.gitMinor=20"
    LDFLAGS+=" -X ${VPKG}/${pkg}.gitCommit=${K8S_GIT_COMMIT}"
    LDFLAGS+=" -X ${VPKG}/${pkg}.gitTreeState=archive"
    LDFLAGS+=" -X ${VPKG}/${pkg}.buildDate=2021-01-13T13:20:00Z"
done
log "go build ${BINARIES[*]} (several minutes on 2 cores)"
go build -trimpath -ldflags "${LDFLAGS}" -o "${STAGE}/" \
    "${BINARIES[@]/#/k8s.io/kubernetes/cmd/}"

{
    for b in "${BINARIES[@]}"; do echo "${b}: $("${STAGE}/${b}" --version)"; done
    echo "etcd: $("${STAGE}/etcd" --version | head -1) (Debian $(dpkg-deb -f "${DL}"/etcd-server_*.deb Version))"
    echo "source: Debian kubernetes ${K8S_DEB_VERSION}, built with $(go version)"
} >"${STAGE}/VERSIONS"
cat "${STAGE}/VERSIONS" >&2
rm -rf "${OUT}"
mv "${STAGE}" "${OUT}"
link_bin

cd /
log "removing build tree ${SCRATCH}"
rm -rf "${SCRATCH}"
log "done: binaries in ${BIN}"
echo "${BIN}"
