# Process and certificate helpers shared by hack/cluster.sh and hack/node.sh (sourced, not run).
# The caller defines `log` and `die`, `exe_of NAME` (the binary a component runs), and sets
# $run (pid files), $logs (log files), $pki (the cluster CA and certificates) and $pid_mark (a
# path every component's command line contains: a stale pid file whose pid the system has since
# given to another process is not taken for ours).

# pid_of NAME: the pid recorded for a component, if that process is alive and really is ours:
# its executable is exe_of NAME's and its command line holds $pid_mark.
pid_of() {
  local name=$1 pid exe
  [ -f "$run/$name.pid" ] || return 1
  pid=$(<"$run/$name.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)} # the binary may have been rebuilt while it runs
  [ "${exe##*/}" = "$(basename "$(exe_of "$name")")" ] || return 1
  { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$pid_mark" || return 1
  echo "$pid"
}

# wait_for COMPONENT WHAT SECONDS COMMAND...: polls COMMAND until it succeeds; on timeout shows
# the end of COMPONENT's log, which is where the reason usually is, and fails.
wait_for() {
  local c=$1 what=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${secs}s waiting for $what"
      log "last lines of $logs/$c.log:"
      tail -n 30 "$logs/$c.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

# start NAME ARGS...: runs exe_of NAME in the background, in its own session (so a Ctrl-C in the
# terminal that ran `up` does not reach it), output to logs/NAME.log, pid to run/NAME.pid, its
# arguments to run/NAME.args (NUL-separated, for `restart`). With APPEND_LOG=1 the log is kept;
# with NETNS=NAME it runs in that network namespace.
start() {
  local name=$1; shift
  printf '%s\0' "$@" >"$run/$name.args"
  # $NETNS: the component runs in that network namespace (nsenter joins it and execs the binary,
  # so the pid is the component's; the mount namespace stays the machine's).
  local pre=()
  [ -n "${NETNS:-}" ] && pre=(nsenter "--net=/run/netns/$NETNS")
  if [ "${APPEND_LOG:-0}" = 1 ]; then
    setsid "${pre[@]}" "$(exe_of "$name")" "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  else
    setsid "${pre[@]}" "$(exe_of "$name")" "$@" >"$logs/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$run/$name.pid"
  # A binary that dies at once (bad flag, port taken) should fail here, with its log.
  sleep 0.1
  if ! pid_of "$name" >/dev/null; then
    sleep 0.5
    pid_of "$name" >/dev/null || { tail -n 20 "$logs/$name.log" >&2; die "$name exited at start"; }
  fi
}

# alive PID: the process exists and is not a zombie (a zombie is a child of this very shell,
# when `up` fails and stops what it started: it has exited, only its status waits to be read).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# stop NAME: SIGTERM to the recorded pid, then SIGKILL after 10 s; waits until it is gone and
# counts it in $stopped.
stop() {
  local name=$1 pid i
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 10s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.1; done
    fi
    log "stopped $name (pid $pid)"
    stopped=$((${stopped:-0} + 1))
  fi
  rm -f "$run/$name.pid"
}

# A client certificate's extensions.
CLIENT_EXT="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

# sign NAME SUBJECT EXTENSIONS: an EC P-256 key and a cert for it signed by the CA named by $ca
# (default: the cluster CA).
sign() {
  local name=$1 subj=$2 ext=$3 ca=${ca:-ca}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -set_serial "0x$(openssl rand -hex 15)" -days 3650 -sha256 -out "$pki/$name.crt" \
    -extfile <(printf '%s\n' "$ext" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid") 2>/dev/null
  rm -f "$pki/$name.csr"
}

# restart NAME: stops NAME and starts it again with the arguments it was started with, its log
# kept (the fault tests, hack/chaos.py: an apiserver or a kubelet restarted mid-flow).
restart() {
  local name=$1 args=()
  [ -f "$run/$name.args" ] || die "$name has no recorded arguments: was it started by this cluster?"
  mapfile -d '' args <"$run/$name.args"
  stop "$name"
  APPEND_LOG=1 start "$name" "${args[@]}"
}
