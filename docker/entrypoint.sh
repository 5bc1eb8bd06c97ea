#!/bin/sh
# The image's entry point: the first argument names a role, the rest go to that program unchanged.
#
#   docker run futures-scan collector --config /app/config.json
#   docker run futures-scan engine            # python -m consumers.spread_engine
#   docker run futures-scan python -c '...'   # not a role: run as given
#
# ENTRYPOINT_DRY_RUN=1 prints the command instead of running it; PYTHON picks the interpreter
# (default: python, the image's). `entrypoint.sh --roles` lists the roles, one per line.
set -eu

PYTHON="${PYTHON:-python}"

command_for() {
    case "$1" in
        collector) echo "main.py" ;;
        engine) echo "-m consumers.spread_engine" ;;
        tracker) echo "-m consumers.spread_tracker" ;;
        recorder) echo "-m consumers.recorder" ;;
        monitor) echo "-m monitor" ;;
        discover) echo "scripts/discover.py" ;;
        simulator) echo "-m simulator" ;;
        control) echo "scripts/control_client.py" ;;
        consume) echo "scripts/consume.py" ;;
        history) echo "scripts/history.py" ;;
        *) return 1 ;;
    esac
}

ROLES="collector engine tracker recorder monitor discover simulator control consume history"

if [ "$#" -eq 0 ]; then
    echo "usage: entrypoint.sh ROLE [ARGS...]   roles: $ROLES (or any command)" >&2
    exit 2
fi

if [ "$1" = "--roles" ]; then
    for role in $ROLES; do echo "$role"; done
    exit 0
fi

if target="$(command_for "$1")"; then
    shift
    # shellcheck disable=SC2086 # $target is "-m module" or "script.py": split on purpose
    set -- "$PYTHON" $target "$@"
fi

if [ "${ENTRYPOINT_DRY_RUN:-}" = "1" ]; then
    echo "$@"
    exit 0
fi
exec "$@"
