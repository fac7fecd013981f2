# gpuflow container runner: sh -c 'eval "$GPUFLOW_RUNNER"' gpuflow ARGV...
gf_idle() {
	echo "gpuflow runner: idle"
	while ! gf_past_deadline; do
		if [ "$GPUFLOW_DEADLINE" -gt 0 ]; then
			sleep $((GPUFLOW_DEADLINE - $(date +%s)))
		else
			sleep 2147483647
		fi
	done
	gf_log "the job's deadline passed: stopping this pod"
	gf_stop_pod
	exec sleep 2147483647
}
# gf_stop_pod [remove]: stop this pod (POST .../action {"action":"stop"}),
# or remove it (DELETE), through RunPod's API with the pod-scoped key.
gf_stop_pod() {
	if [ -z "${RUNPOD_POD_ID-}" ] || [ -z "${RUNPOD_API_KEY-}" ]; then
		gf_log "no RUNPOD_POD_ID or RUNPOD_API_KEY: cannot stop this pod"
		return 1
	fi
	(umask 077 && printf 'Authorization: Bearer %s\n' "$RUNPOD_API_KEY" >"$GF_S/runpod.h")
	_st_delay=$GPUFLOW_RETRY_MIN_MS
	while :; do
		if [ "${1-}" = remove ]; then
			_st_code=$(curl -sS -o /dev/null -w '%{http_code}' --connect-timeout 10 -m 60 -H @"$GF_S/runpod.h" -X DELETE \
				"${GPUFLOW_RUNPOD_API:-https://api.runpod.io}/v2/pods/$RUNPOD_POD_ID" 2>/dev/null) || :
		else
			_st_code=$(curl -sS -o /dev/null -w '%{http_code}' --connect-timeout 10 -m 60 -H @"$GF_S/runpod.h" \
				-H 'Content-Type: application/json' -d '{"action":"stop"}' \
				"${GPUFLOW_RUNPOD_API:-https://api.runpod.io}/v2/pods/$RUNPOD_POD_ID/action" 2>/dev/null) || :
		fi
		case $_st_code in
		2??)
			gf_log "pod ${1:-stop}: done"
			return 0
			;;
		4??) [ "$_st_code" = 429 ] || {
			gf_log "stop pod: HTTP $_st_code"
			return 1
		} ;;
		esac
		gf_sleep_ms $((_st_delay / 2 + $(gf_rand) % (_st_delay / 2 + 1)))
		_st_delay=$((_st_delay * 2))
		[ "$_st_delay" -le "$GPUFLOW_RETRY_MAX_MS" ] || _st_delay=$GPUFLOW_RETRY_MAX_MS
	done
}
gf_need_curl() {
	command -v curl >/dev/null 2>&1 && return 0
	gf_log "curl is missing: installing it"
	if command -v apt-get >/dev/null 2>&1; then
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl ca-certificates
	elif command -v apk >/dev/null 2>&1; then
		apk add --no-cache curl ca-certificates
	elif command -v microdnf >/dev/null 2>&1; then
		microdnf install -y curl
	elif command -v dnf >/dev/null 2>&1; then
		dnf install -y curl
	elif command -v yum >/dev/null 2>&1; then
		yum install -y curl
	fi >&2
	command -v curl >/dev/null 2>&1
}
if ! gf_init "$GPUFLOW_STATE_DIR"; then
	gf_log "cannot write $GPUFLOW_STATE_DIR: not running the job"
	exec sleep 2147483647
fi
gf_need_curl || gf_log "no curl: this job cannot report to gpuflow"
: >>"$GF_S/output.log"
if [ -e "$GF_S/exit_code" ]; then
	code=$(cat "$GF_S/exit_code")
	gf_log "the job ran before this container restarted (exit $code): not running it again"
elif [ -e "$GF_S/started" ]; then
	code=-1
	echo 'gpuflow: the container restarted while the job ran; the job is not run again' >>"$GF_S/output.log"
	echo "$code" >"$GF_S/exit_code.tmp" && mv -f "$GF_S/exit_code.tmp" "$GF_S/exit_code"
else
	: >"$GF_S/started"
	gf_report progress '{"percent":0,"message":"started"}' &
	gf_progress=$!
	gf_ship_loop &
	gf_shipper=$!
	(
		unset GPUFLOW_AGENT_TOKEN GPUFLOW_RUNNER
		exec "$@"
	) </dev/null >>"$GF_S/output.log" 2>&1
	code=$?
	echo "$code" >"$GF_S/exit_code.tmp" && mv -f "$GF_S/exit_code.tmp" "$GF_S/exit_code"
	kill "$gf_progress" 2>/dev/null
fi
gf_ended
if [ -n "${gf_shipper-}" ]; then
	gf_ship_end "$gf_shipper"
else
	: >"$GF_S/output.done"
	gf_ship
fi
if [ ! -e "$GF_S/finished.acked" ]; then
	if gf_report finished "{\"exit_code\":$code}"; then
		: >"$GF_S/finished.acked"
	else
		# RunPod shows a stopped pod EXITED, or a removed one gone: the
		# provider's watcher sees it, and the job ends instead of billing
		# on. A spot pod is removed: stopped, it would read as reclaimed.
		if [ "${GPUFLOW_SPOT-}" = true ]; then
			gf_log "the job's end was not acknowledged: removing this pod"
			gf_stop_pod remove
		else
			gf_log "the job's end was not acknowledged: stopping this pod"
			gf_stop_pod
		fi
		exec sleep 2147483647
	fi
fi
gf_idle
