#!/bin/bash
# create hook of WKSHP-Ansible101 (run by wod-backend before the notebooks are delivered).
# It prepares the student's lab: a lab file describing the student's appliance, and a
# small per-student process standing in for the lab's container. Inputs come as WOD_*
# environment variables (README, "Hooks"); the password, if needed, from $WOD_PASSWORD_FILE.
set -euo pipefail
lab="$WOD_STATE_DIR/labs/$WOD_FOLDER"
mkdir -p "$lab"
chmod 700 "$lab"
{
  echo "student=$WOD_USER"
  echo "target=$WOD_TARGET"
  echo "mode=$WOD_MODE"
  echo "customer=$WOD_CUSTOMER"
  [ -n "${WOD_PASSWORD_FILE:-}" ] && echo "password_sha256=$(sha256sum < "$WOD_PASSWORD_FILE" | cut -c1-16)"
} > "$lab/$WOD_USER.lab"
# Stop a lab process left over from an earlier CREATE, then start a fresh one. The pid
# file is in a writable place: kill only a process that is ours and is the lab's own
# (its command line names this student), never whatever number the file holds.
pidfile="$lab/$WOD_USER.pid"
if [ -f "$pidfile" ] && [ ! -L "$pidfile" ]; then
  pid=$(head -c 16 "$pidfile" | tr -cd '0-9')
  if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(stat -c %u "/proc/$pid")" = "$(id -u)" ] \
      && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qx "wod-lab-$WOD_USER 86400 "; then
    kill "$pid" 2>/dev/null || true
  fi
fi
setsid bash -c 'exec -a "$0" sleep 86400' "wod-lab-$WOD_USER" < /dev/null > /dev/null 2>&1 &
echo $! > "$lab/$WOD_USER.pid"
echo "lab of $WOD_USER ready on $WOD_TARGET (process $(cat "$lab/$WOD_USER.pid"))"
