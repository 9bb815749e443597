#!/usr/bin/env bash
# Print, as the last line on stdout, an image to pass to `sam local ... --invoke-image`.
#
# SAM normally pulls public.ecr.aws/lambda/python:3.13, which this machine kind cannot reach
# (only PyPI/Debian/npm are). So: reuse our image if present, else try the official one
# (bounded), else build a compatible one from Debian trixie (Python 3.13) + awslambdaric
# from PyPI. SAM adds its own runtime interface emulator on top, so the image only needs
# /var/runtime/bootstrap. All logging goes to stderr; stdout carries only the image name.
#
# Environment (all optional):
#   SAMLOCAL_IMAGE          name of the built image (default ocelot-sms/lambda-python:3.13)
#   SAMLOCAL_INVOKE_ALIAS   also tagged on the image chosen, whichever it is, so that one fixed
#                           name works everywhere (samconfig.toml's invoke_image)
#                           (default ocelot-sms/sam-invoke:python3.13)
#   SAMLOCAL_TRY_PULL       0 = never try the official image   (default 1)
#   SAMLOCAL_PULL_TIMEOUT   seconds for that pull attempt      (default 30)
#   SAMLOCAL_DEBIAN_MIRROR  debootstrap mirror                 (default http://deb.debian.org/debian)
#   SAMLOCAL_PIP_INDEX_URL  index for pip inside the build     (default: pip's own)
set -euo pipefail

readonly LOCAL_IMAGE="${SAMLOCAL_IMAGE:-ocelot-sms/lambda-python:3.13}"
readonly INVOKE_ALIAS="${SAMLOCAL_INVOKE_ALIAS:-ocelot-sms/sam-invoke:python3.13}"
readonly OFFICIAL_IMAGE="public.ecr.aws/lambda/python:3.13"
readonly TRY_PULL="${SAMLOCAL_TRY_PULL:-1}"
readonly PULL_TIMEOUT="${SAMLOCAL_PULL_TIMEOUT:-30}"
readonly MIRROR="${SAMLOCAL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly SUITE="trixie" # Debian 13 ships Python 3.13, the Lambda runtime we emulate
# Pinned so a rebuild gives the same runtime; every dependency pinned too, so pip resolves nothing
# on its own. awslambdaric (+ simplejson, snapshot-restore-py) is the runtime client. boto3/botocore
# (+ s3transfer, jmespath, python-dateutil, six, urllib3) are what the official image ships in its
# runtime and what our layer relies on (layers/shared/requirements.txt does not bundle them); the
# versions match requirements-dev.txt, so sam local runs the boto3 the unit tests run.
readonly PIP_PINS=(
  awslambdaric==4.2.2 simplejson==4.3.0 snapshot-restore-py==1.0.0
  boto3==1.43.108 botocore==1.43.127 s3transfer==0.19.3 jmespath==1.1.0
  python-dateutil==2.9.0.post0 six==1.17.0 urllib3==2.8.0
)
# Bump the leading number when the recipe changes in a way the pins do not show (bootstrap,
# layout): an existing image with another value is rebuilt. No spaces: `docker import -c ENV`
# would split the value at them.
RECIPE="2;${SUITE};$(IFS=,; echo "${PIP_PINS[*]}")"
readonly RECIPE
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR

now_us() { local t="${EPOCHREALTIME/[.,]/}"; echo "$((10#$t))"; }
T0="$(now_us)"
readonly T0
phase_t0="$T0"
fmt_s() { printf '%d.%01d' "$(($1 / 1000000))" "$((($1 % 1000000) / 100000))"; }
log() { echo "ensure-image: $*" >&2; }
# One stderr line per phase: its own duration and the running total (we report these timings).
phase_done() {
  local t; t="$(now_us)"
  printf 'ensure-image: %-34s %6ss (total %ss)\n' "$1" "$(fmt_s $((t - phase_t0)))" "$(fmt_s $((t - T0)))" >&2
  phase_t0="$t"
}
die() {
  log "ERROR: $*"
  exit 1
}
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
recipe_of() {
  docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$1" 2>/dev/null \
    | sed -n 's/^OCELOT_IMAGE_RECIPE=//p'
}
emit() {
  # Re-tag only when the alias points elsewhere (a tag is cheap, but keep the common path silent).
  if [[ "$(docker image inspect -f '{{.Id}}' "$INVOKE_ALIAS" 2>/dev/null)" != \
    "$(docker image inspect -f '{{.Id}}' "$1")" ]]; then
    docker tag "$1" "$INVOKE_ALIAS" || die "could not tag $1 as $INVOKE_ALIAS"
    log "tagged $1 as $INVOKE_ALIAS"
  fi
  phase_done "image ready"
  echo "$1"
  exit 0
}

# Standalone use needs an engine; its progress lines go to stderr to keep stdout clean.
"$SCRIPT_DIR/ensure-docker.sh" >&2

if image_exists "$LOCAL_IMAGE"; then
  if [[ "$(recipe_of "$LOCAL_IMAGE")" == "$RECIPE" ]]; then
    emit "$LOCAL_IMAGE"
  fi
  log "$LOCAL_IMAGE was built from another recipe: rebuilding"
  stale_id="$(docker image inspect -f '{{.Id}}' "$LOCAL_IMAGE")"
elif image_exists "$OFFICIAL_IMAGE"; then
  emit "$OFFICIAL_IMAGE"
elif [[ "$TRY_PULL" != 0 ]]; then
  # Machines that reach the public registry get the real image; here this fails (bounded).
  if pull_out="$(timeout "$PULL_TIMEOUT" docker pull -q "$OFFICIAL_IMAGE" 2>&1)"; then
    phase_done "pulled $OFFICIAL_IMAGE"
    emit "$OFFICIAL_IMAGE"
  fi
  log "pull failed: ${pull_out%%$'\n'*}"
  phase_done "pull attempt (failed)"
fi

[[ "$(id -u)" -eq 0 ]] || die "building $LOCAL_IMAGE needs root (debootstrap, chroot)"

# Serialise concurrent builders (e.g. make -j); a waiter then finds the image built.
exec 9>"${TMPDIR:-/tmp}/ocelot-sms-ensure-image.lock"
if ! flock -n 9; then
  log "another build of the image is running: waiting for it"
  flock -w 900 9 || die "timed out waiting for the image build lock"
fi
if image_exists "$LOCAL_IMAGE" && [[ "$(recipe_of "$LOCAL_IMAGE")" == "$RECIPE" ]]; then
  emit "$LOCAL_IMAGE"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the lists do not know the package (captured: see pipefail).
  policy="$(apt-cache policy debootstrap 2>/dev/null || true)"
  if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
  fi
  apt_log="${TMPDIR:-/tmp}/ocelot-sms-apt-debootstrap.log"
  # A failure with lists already present is usually a stale list (404): refresh once, retry.
  apt-get install -y -q --no-install-recommends debootstrap >"$apt_log" 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends debootstrap >"$apt_log" 2>&1; } \
    || die "apt-get install debootstrap failed (see $apt_log)"
  phase_done "apt-get install debootstrap"
fi
# An older debootstrap may not know trixie yet; sid's script builds any testing/stable suite.
suite_script=()
[[ -e "/usr/share/debootstrap/scripts/$SUITE" ]] || suite_script=(/usr/share/debootstrap/scripts/sid)

# Keep the build tree off tmpfs and remove it however we exit; unmount anything left mounted
# inside first so that rm never walks into the host's /proc or /dev.
work="$(mktemp -d /var/tmp/ocelot-sms-image.XXXXXX)"
# shellcheck disable=SC2317 # reached through the trap, which shellcheck 0.9 does not follow
cleanup() {
  local m
  while read -r m; do umount -l "$m" 2>/dev/null || true; done \
    < <(awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
# Turn INT/TERM into a normal exit so the EXIT trap (cleanup) runs then too.
trap 'exit 130' INT
trap 'exit 143' TERM
rootfs="$work/rootfs"

if ! debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" "${suite_script[@]}" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap $SUITE failed"
fi
phase_done "debootstrap $SUITE minbase"

# The emulated runtime is python3.13: refuse anything else rather than ship a wrong image.
py_version="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ "$py_version" == "3.13" ]] || die "python3 in $SUITE is $py_version, not 3.13"

# pip inside the chroot needs DNS and the host's CA bundle (which may hold a local proxy's
# CA); both are removed again below so they are not baked into the image.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/tmp/host-ca.pem"
# env -i: the host's PIP_* settings point at host-only paths (find-links, file:// indexes).
pip_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  PIP_CERT=/tmp/host-ca.pem PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=60)
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  if [[ -n "${!v:-}" ]]; then pip_env+=("$v=${!v}"); fi
done
if [[ -n "${SAMLOCAL_PIP_INDEX_URL:-}" ]]; then
  pip_env+=("PIP_INDEX_URL=$SAMLOCAL_PIP_INDEX_URL")
fi
if ! env -i "${pip_env[@]}" chroot "$rootfs" python3 -m pip install -q --break-system-packages \
  --target /var/runtime "${PIP_PINS[@]}" >"$work/pip.log" 2>&1; then
  tail -n 20 "$work/pip.log" >&2
  die "pip install ${PIP_PINS[*]} failed"
fi
phase_done "pip install awslambdaric, boto3"

# SAM's emulator runs /var/runtime/bootstrap with _HANDLER and AWS_LAMBDA_RUNTIME_API set.
# Search order as in the official python3.13 runtime: the function (/var/task, first through the
# working directory of `python3 -m`), then the layers, then what the runtime ships (/var/runtime):
# a layer that bundles its own boto3 or urllib3 wins over ours, as it would in AWS.
cat >"$rootfs/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# Lambda custom-runtime entry: the function, then layers (/opt/python), then /var/runtime.
export PYTHONPATH="/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
cd "${LAMBDA_TASK_ROOT:-/var/task}" || exit 1
exec python3 -m awslambdaric "$_HANDLER"
EOF
chmod 0755 "$rootfs/var/runtime/bootstrap"
mkdir -p "$rootfs/var/task" "$rootfs/opt"
rm -f "$rootfs/tmp/host-ca.pem" "$rootfs/etc/resolv.conf"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

# Import untagged, check it, then tag: a broken build never takes the name.
image_id="$(tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' \
  --exclude='./sys/*' -c . | docker import \
  -c 'WORKDIR /var/task' \
  -c 'ENV LAMBDA_TASK_ROOT=/var/task' \
  -c 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "ENV OCELOT_IMAGE_RECIPE=$RECIPE" \
  -m "ocelot-sms offline Lambda python3.13 image" - )"
phase_done "docker import"

# The runtime's boto3 must be the pinned one and build a client (no network: nothing is called).
check='import sys, awslambdaric, boto3, botocore
assert sys.version_info[:2] == (3, 13), sys.version
assert (boto3.__version__, botocore.__version__) == (sys.argv[1], sys.argv[2]), (boto3.__version__, botocore.__version__)
boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
print(sys.version.split()[0], "boto3", boto3.__version__)'
pin_of() { local p; for p in "${PIP_PINS[@]}"; do [[ "$p" == "$1=="* ]] && echo "${p#*==}"; done; }
if ! got="$(docker run --rm --network none -e PYTHONPATH=/var/runtime --entrypoint python3 \
  "$image_id" -c "$check" "$(pin_of boto3)" "$(pin_of botocore)")"; then
  docker image rm "$image_id" >/dev/null 2>&1 || true
  die "built image fails its check (python3.13, awslambdaric, pinned boto3/botocore)"
fi
docker run --rm --network none --entrypoint test "$image_id" -x /var/runtime/bootstrap \
  || die "built image lacks an executable /var/runtime/bootstrap"
docker tag "$image_id" "$LOCAL_IMAGE"
# Drop the image this one replaces (best effort: a container may still use it).
if [[ -n "${stale_id:-}" ]]; then docker image rm "$stale_id" >/dev/null 2>&1 || true; fi
phase_done "checked (python $got) and tagged"
emit "$LOCAL_IMAGE"
