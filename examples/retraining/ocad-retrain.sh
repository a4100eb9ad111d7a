#!/usr/bin/env bash
# Weekly retraining job: train -> gate -> promote or keep, then act on the exit code.
# Environment (defaults in brackets):
#   OCAD_DATA     directory of exports; the newest *.csv / *.parquet is used [/var/lib/ocad/exports]
#   OCAD_STORE    model store the NOC service reads [/var/lib/ocad/store]
#   OCAD_LABELLED optional labelled file for the detection check (data the models did not train on)
#   OCAD_BIN      the ocad command [ocad]
#   OCAD_RELOAD   command run after a promotion [systemctl reload ocad-noc.service]
set -u
DATA=${OCAD_DATA:-/var/lib/ocad/exports}
STORE=${OCAD_STORE:-/var/lib/ocad/store}
OCAD=${OCAD_BIN:-ocad}
RELOAD=${OCAD_RELOAD:-systemctl reload ocad-noc.service}
SUMMARY="$STORE/retrain-$(date -u +%Y%m%dT%H%M%SZ).json"

args=(retrain --data "$DATA" --store "$STORE" --init-from active --json "$SUMMARY" --quiet)
if [ -n "${OCAD_LABELLED:-}" ]; then
    args+=(--labelled "$OCAD_LABELLED")
fi

"$OCAD" "${args[@]}"
rc=$?
case $rc in
    0) echo "ocad retrain: promoted (summary $SUMMARY)"; $RELOAD ;;
    3) echo "ocad retrain: the gate kept a candidate; see $SUMMARY" >&2 ;;   # not an outage: old models run on
    4) echo "ocad retrain: unchanged" ;;
    2) echo "ocad retrain: usage or data error (is $DATA filled by the export?)" >&2; exit 2 ;;
    *) echo "ocad retrain: failed with exit code $rc" >&2; exit "$rc" ;;
esac
# 0, 3 and 4 are normal outcomes of a scheduled run
exit 0
