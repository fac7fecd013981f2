code=$?
kill "$progress" 2>/dev/null
gf_ended
gf_ship_end "$shipper"
gf_report finished "{\"exit_code\":$code}" && exit 0
rc=$?
# No cloud API carries the exit code, but every one shows a stopped VM:
# the provider's watcher sees it, and the job ends instead of billing on.
gf_log "the job's end was not acknowledged: powering this machine off"
poweroff || shutdown -h now
exit "$rc"
