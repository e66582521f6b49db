# bash completion for tether-hub, tether-site and tetherctl: commands, subcommands and options.
# SPDX-License-Identifier: MIT
# Installed once per program name (bash-completion loads a file by the name
# of the command being completed).

_tether_dirs_or_files() { # $1: the option just typed
    case "$1" in
    --state) COMPREPLY=($(compgen -d -- "$cur")) ;;
    --config | --data | --ca | --cert | --key) COMPREPLY=($(compgen -f -- "$cur")) ;;
    *) return 1 ;;
    esac
    return 0
}

_tether_hub() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    _tether_dirs_or_files "$prev" && return
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "init run version help --help --version" -- "$cur"))
        return
    fi
    case "${COMP_WORDS[1]}" in
    init) COMPREPLY=($(compgen -W "--state --name --public --db --force --help" -- "$cur")) ;;
    run)
        [ "$prev" = --log-format ] && COMPREPLY=($(compgen -W "text json" -- "$cur")) && return
        COMPREPLY=($(compgen -W "--state --listen --config --ping-interval --handshake-timeout
            --drain-grace --log-format --help" -- "$cur"))
        ;;
    version | help) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
    esac
}

_tether_site() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    _tether_dirs_or_files "$prev" && return
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "enroll run doctor rotate-key status version help --help --version" \
            -- "$cur"))
        return
    fi
    case "${COMP_WORDS[1]}" in
    enroll) COMPREPLY=($(compgen -W "--state --hub --proxy --help" -- "$cur")) ;;
    run)
        [ "$prev" = --log-format ] && COMPREPLY=($(compgen -W "text json" -- "$cur")) && return
        COMPREPLY=($(compgen -W "--state --service --service-opt --config --source-port --proxy
            --ping-interval --connect-timeout --upstream-timeout --log-format --help" -- "$cur"))
        ;;
    doctor)
        COMPREPLY=($(compgen -W "--state --config --proxy --timeout --rtt-warn --help" -- "$cur"))
        ;;
    rotate-key) COMPREPLY=($(compgen -W "--state --hub --proxy --help" -- "$cur")) ;;
    status) COMPREPLY=($(compgen -W "--state --help" -- "$cur")) ;;
    version | help) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
    esac
}

_tetherctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local global="--config --hub --token --pin --json --help --version"
    local i cmd="" sub="" w
    _tether_dirs_or_files "$prev" && return
    case "$prev" in
    --role) COMPREPLY=($(compgen -W "admin user" -- "$cur")) && return ;;
    esac
    # The command and subcommand typed so far, skipping options and their
    # values (the same names as tetherctl's own table).
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case "$w" in
        --config | --hub | --token | --pin | --label | --ttl | --role | --sites | --services | \
            --site | --limit | --before | --service | --method | --path | --data | --header | \
            --timeout | --listen) ((i++)) ;;
        -*) ;;
        *) if [ -z "$cmd" ]; then cmd=$w; elif [ -z "$sub" ]; then sub=$w; fi ;;
        esac
    done
    local query_opts="--service --sites --method --path --data --header --timeout --ttl --wait"
    case "$cmd $sub" in
    " ") COMPREPLY=($(compgen -W "site token enroll audit query connect help $global" \
        -- "$cur")) ;;
    "site ")
        COMPREPLY=($(compgen -W "add list show disable enable revoke remove label token watch" \
            -- "$cur"))
        ;;
    "site add") COMPREPLY=($(compgen -W "--label --ttl $global" -- "$cur")) ;;
    "site token") COMPREPLY=($(compgen -W "--ttl $global" -- "$cur")) ;;
    "token ") COMPREPLY=($(compgen -W "create list revoke" -- "$cur")) ;;
    "token create")
        COMPREPLY=($(compgen -W "--role --sites --services --ttl $global" -- "$cur"))
        ;;
    "enroll ") COMPREPLY=($(compgen -W "list cancel" -- "$cur")) ;;
    "enroll list") COMPREPLY=($(compgen -W "--site --all $global" -- "$cur")) ;;
    "audit "*) COMPREPLY=($(compgen -W "--limit --before $global" -- "$cur")) ;;
    "query ") COMPREPLY=($(compgen -W "list show cancel $query_opts $global" -- "$cur")) ;;
    "query list") COMPREPLY=($(compgen -W "--limit --before $global" -- "$cur")) ;;
    "query show" | "query cancel") COMPREPLY=($(compgen -W "$global" -- "$cur")) ;;
    "query "*) COMPREPLY=($(compgen -W "$query_opts $global" -- "$cur")) ;;
    "connect "*) COMPREPLY=($(compgen -W "--listen --stdio $global" -- "$cur")) ;;
    "help "*)
        if [ -z "$sub" ]; then
            COMPREPLY=($(compgen -W "site token enroll audit query connect" -- "$cur"))
        fi
        ;;
    *) COMPREPLY=($(compgen -W "$global" -- "$cur")) ;;
    esac
}

complete -F _tether_hub tether-hub
complete -F _tether_site tether-site
complete -F _tetherctl tetherctl
