code=$?
kill "$progress" 2>/dev/null
gf_ship_end "$shipper"
gf_report finished "{\"exit_code\":$code}"
