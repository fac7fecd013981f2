# gpuflow agent (POSIX sh): durable reports to the agent endpoint.
: "${GPUFLOW_RETRY_MIN_MS:=1000}" "${GPUFLOW_RETRY_MAX_MS:=30000}" "${GPUFLOW_DEADLINE:=0}" "${GPUFLOW_REPORT_GRACE:=600}"
: "${GPUFLOW_LOG_CHUNK:=262144}" "${GPUFLOW_LOG_INTERVAL_MS:=5000}"
gf_log() { printf 'gpuflow agent: %s\n' "$*" >&2; }
gf_rand() { _r=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -dc 0-9); echo "${_r:-0}"; }
gf_secs() { echo "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }
gf_sleep_ms() { sleep "$(gf_secs "$1")"; }
gf_past_deadline() { [ "$GPUFLOW_DEADLINE" -gt 0 ] && [ "$(date +%s)" -ge "$GPUFLOW_DEADLINE" ]; }
# gf_ended: the job's command has ended; its reports have until the report
# grace passes ($GF_S/give_up, kept across a restart of the runner).
gf_ended() {
	[ -e "$GF_S/give_up" ] && return 0
	echo $(($(date +%s) + GPUFLOW_REPORT_GRACE)) >"$GF_S/give_up.tmp" && mv -f "$GF_S/give_up.tmp" "$GF_S/give_up"
}
# gf_give_up: true past the deadline or the report grace, with the reason
# in $GF_WHY.
gf_give_up() {
	if gf_past_deadline; then
		GF_WHY="the job's deadline passed"
		return 0
	fi
	_gu=$(cat "$GF_S/give_up" 2>/dev/null) || return 1
	[ "$(date +%s)" -ge "${_gu:-0}" ] || return 1
	GF_WHY="the report grace (${GPUFLOW_REPORT_GRACE}s after the job ended) passed"
}
gf_init() {
	GF_S=$1
	mkdir -p "$GF_S" || return 1
	(umask 077 && printf 'Authorization: Bearer %s\n' "$GPUFLOW_AGENT_TOKEN" >"$GF_S/auth.h")
}
# gf_post PATH FILE TYPE [HEADER]: 0 once the API answers 2xx, 1 when it
# refuses for good, 2 past the deadline or the report grace; anything else
# is retried.
gf_post() {
	_gp_delay=$GPUFLOW_RETRY_MIN_MS
	while :; do
		_gp_code=$(curl -sS -o /dev/null -D "$2.h" -w '%{http_code}' --connect-timeout 10 -m 60 \
			-H @"$GF_S/auth.h" -H "Content-Type: $3" ${4:+-H "$4"} --data-binary @"$2" \
			"$GPUFLOW_AGENT_URL/$1" 2>/dev/null) || :
		case $_gp_code in
		2??) return 0 ;;
		400 | 401 | 403 | 404 | 409 | 410 | 413 | 422)
			gf_log "$1: HTTP $_gp_code, not retried"
			return 1
			;;
		esac
		if gf_give_up; then
			gf_log "$1: $GF_WHY, giving up"
			return 2
		fi
		_gp_wait=$((_gp_delay / 2 + $(gf_rand) % (_gp_delay / 2 + 1)))
		_gp_ra=$(sed -n 's/^[Rr][Ee][Tt][Rr][Yy]-[Aa][Ff][Tt][Ee][Rr]: *\([0-9][0-9]*\).*/\1/p' "$2.h" 2>/dev/null | head -n 1)
		if [ -n "$_gp_ra" ] && [ "$_gp_ra" -lt 300 ] && [ $((_gp_ra * 1000)) -gt "$_gp_wait" ]; then
			_gp_wait=$((_gp_ra * 1000))
		fi
		# The last try comes when the report grace ends, not a backoff later.
		if _gu=$(cat "$GF_S/give_up" 2>/dev/null); then
			_gp_left=$(((_gu - $(date +%s)) * 1000))
			[ "$_gp_left" -ge 0 ] || _gp_left=0
			[ "$_gp_wait" -le "$_gp_left" ] || _gp_wait=$_gp_left
		fi
		gf_log "$1: ${_gp_code:-000}, again in ${_gp_wait}ms"
		gf_sleep_ms "$_gp_wait"
		_gp_delay=$((_gp_delay * 2))
		[ "$_gp_delay" -le "$GPUFLOW_RETRY_MAX_MS" ] || _gp_delay=$GPUFLOW_RETRY_MAX_MS
	done
}
# gf_report NAME JSON
gf_report() {
	printf '%s' "$2" >"$GF_S/$1.json"
	gf_post "$1" "$GF_S/$1.json" application/json
}
# gf_ship: ship the spool ($GF_S/output.log) past the acknowledged offset
# ($GF_S/output.off), in chunks.
gf_ship() {
	[ ! -e "$GF_S/logs.refused" ] || return 1
	while :; do
		_gs_off=$(cat "$GF_S/output.off" 2>/dev/null) || _gs_off=0
		_gs_size=$(wc -c <"$GF_S/output.log" 2>/dev/null | tr -dc 0-9)
		[ "${_gs_size:-0}" -gt "${_gs_off:-0}" ] || return 0
		_gs_n=$((_gs_size - _gs_off))
		[ "$_gs_n" -le "$GPUFLOW_LOG_CHUNK" ] || _gs_n=$GPUFLOW_LOG_CHUNK
		tail -c +$((_gs_off + 1)) "$GF_S/output.log" | head -c "$_gs_n" >"$GF_S/chunk"
		if ! gf_post logs "$GF_S/chunk" text/plain "Gpuflow-Log-Offset: $_gs_off"; then
			: >"$GF_S/logs.refused"
			return 1
		fi
		echo $((_gs_off + _gs_n)) >"$GF_S/output.off.tmp" && mv -f "$GF_S/output.off.tmp" "$GF_S/output.off"
	done
}
# gf_ship_loop: ship as output arrives, until $GF_S/output.done exists and
# everything before it is shipped; USR1 (gf_ship_end) cuts a wait short.
gf_ship_loop() {
	_gl_sp=
	trap '[ -z "$_gl_sp" ] || kill "$_gl_sp" 2>/dev/null' USR1
	: >"$GF_S/shipper.ready"
	while :; do
		if [ -e "$GF_S/output.done" ]; then
			gf_ship
			return
		fi
		gf_ship || return 1
		sleep "$(gf_secs "$GPUFLOW_LOG_INTERVAL_MS")" &
		_gl_sp=$!
		wait "$_gl_sp"
		_gl_sp=
	done
}
# gf_ship_end PID: the output is complete; wait for shipper PID to ship it.
gf_ship_end() {
	: >"$GF_S/output.done"
	[ ! -e "$GF_S/shipper.ready" ] || kill -USR1 "$1" 2>/dev/null
	wait "$1"
	gf_ship
}
