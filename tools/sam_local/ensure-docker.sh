#!/usr/bin/env bash
# Make a Docker engine answer `docker info`, for `sam local invoke` / `start-api`.
#
# Machines of this project's kind have a docker client but no engine running (and no systemd
# to start one), so as root we install Debian's docker.io when dockerd is missing and start
# dockerd in the background ourselves. Idempotent: exits at once when the engine answers.
#
# Environment (all optional):
#   SAMLOCAL_DOCKERD_LOG    dockerd's log file      (default /tmp/ocelot-sms-dockerd.log)
#   SAMLOCAL_DOCKER_WAIT    seconds to wait for it  (default 60)
set -euo pipefail

readonly DOCKERD_LOG="${SAMLOCAL_DOCKERD_LOG:-/tmp/ocelot-sms-dockerd.log}"
readonly WAIT_S="${SAMLOCAL_DOCKER_WAIT:-60}"
readonly DEFAULT_SOCK="unix:///var/run/docker.sock"
readonly LOCK_FILE="/var/lock/ocelot-sms-ensure-docker.lock"

# Microsecond clock from bash itself, so timings need no external tool.
now_us() { local t="${EPOCHREALTIME/[.,]/}"; echo "$((10#$t))"; }
T0="$(now_us)"
readonly T0
phase_t0="$T0"

fmt_s() { printf '%d.%01d' "$(($1 / 1000000))" "$((($1 % 1000000) / 100000))"; }

# One line per phase: its own duration and the running total (we report these timings).
phase_done() {
  local t; t="$(now_us)"
  printf 'ensure-docker: %-28s %6ss (total %ss)\n' "$1" "$(fmt_s $((t - phase_t0)))" "$(fmt_s $((t - T0)))"
  phase_t0="$t"
}

die() {
  echo "ensure-docker: ERROR: $*" >&2
  exit 1
}

# `docker info` can hang on a half-started daemon; bound it.
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

dockerd_running() {
  local pid
  [[ -r /var/run/docker.pid ]] || return 1
  pid="$(cat /var/run/docker.pid 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

if command -v docker >/dev/null 2>&1 && docker_answers; then
  phase_done "engine already answers"
  exit 0
fi

# A remote/custom DOCKER_HOST is someone else's engine: starting a local one would not help.
if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != "$DEFAULT_SOCK" ]]; then
  die "DOCKER_HOST=${DOCKER_HOST} does not answer 'docker info'; not starting a local dockerd"
fi

if [[ "$(id -u)" -ne 0 ]]; then
  die "docker does not answer and we are not root: start dockerd (or add yourself to the docker group) first"
fi

# Serialise concurrent callers (e.g. make -j) so only one installs and starts dockerd.
exec 9>"$LOCK_FILE"
if ! flock -n 9; then
  echo "ensure-docker: another caller is starting docker: waiting for it"
  flock -w 600 9 || die "timed out waiting for $LOCK_FILE"
fi
if command -v docker >/dev/null 2>&1 && docker_answers; then
  phase_done "engine answered (other caller)"
  exit 0
fi
phase_done "checked: engine not answering"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # apt-get update only when the package lists do not know docker.io yet.
  # (Captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.)
  policy="$(apt-cache policy docker.io 2>/dev/null || true)"
  if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    phase_done "apt-get update"
  fi
  # --no-install-recommends: skips needrestart/git/apparmor, which dockerd does not need here.
  if ! apt-get install -y -q --no-install-recommends docker.io >/tmp/ocelot-sms-apt-docker.log 2>&1; then
    # Stale lists give 404s for superseded versions: refresh once and retry.
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends docker.io >/tmp/ocelot-sms-apt-docker.log 2>&1 \
      || die "apt-get install docker.io failed (see /tmp/ocelot-sms-apt-docker.log)"
  fi
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is not on PATH"
  phase_done "apt-get install docker.io"
fi

# The package's init script may have started one already (no policy-rc.d): do not start two.
if dockerd_running; then
  phase_done "dockerd already running"
else
  # setsid + nohup: dockerd must outlive this script and the make/CI step that ran it;
  # it must not inherit the lock (fd 9) or our stdout, or callers would wait on it forever.
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
  phase_done "started dockerd (pid $!)"
fi

deadline=$((SECONDS + WAIT_S))
until docker_answers; do
  if ((SECONDS >= deadline)); then
    tail -n 15 "$DOCKERD_LOG" >&2 2>/dev/null || true
    die "dockerd did not answer 'docker info' within ${WAIT_S}s (log: $DOCKERD_LOG)"
  fi
  sleep 0.5
done
phase_done "engine answers"
