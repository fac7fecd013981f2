gf_init "${GPUFLOW_STATE_DIR:-/var/lib/gpuflow/$GPUFLOW_JOB_ID}" || exit 1
: >>"$GF_S/output.log"
envargs=()
for v in $(compgen -e | grep '^GPUFLOW_JOBENV_'); do envargs+=(-e "${v#GPUFLOW_JOBENV_}=${!v}"); done
gf_report progress '{"percent":0,"message":"pulling image"}' &
progress=$!
gf_ship_loop &
shipper=$!
