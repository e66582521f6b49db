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
    init) COMPREPLY=($(compgen -W "--state --name --public --force --help" -- "$cur")) ;;
    run)
        COMPREPLY=($(compgen -W "--state --listen --config --ping-interval --handshake-timeout
            --drain-grace --log-format --help" -- "$cur"))
        ;;
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
        COMPREPLY=($(compgen -W "--state --service --service-opt --config --source-port --proxy
            --ping-interval --connect-timeout --upstream-timeout --log-format --help" -- "$cur"))
        ;;
    doctor)
        COMPREPLY=($(compgen -W "--state --config --proxy --timeout --rtt-warn --help" -- "$cur"))
        ;;
    rotate-key) COMPREPLY=($(compgen -W "--state --hub --proxy --help" -- "$cur")) ;;
    status) COMPREPLY=($(compgen -W "--state --help" -- "$cur")) ;;
    esac
}

_tetherctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local global="--config --hub --token --pin --json --help --version"
    local i cmd="" sub="" w
    _tether_dirs_or_files "$prev" && return
    # The command and subcommand typed so far, skipping global options.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case "$w" in
        --config | --hub | --token | --pin) ((i++)) ;;
        -*) ;;
        *) if [ -z "$cmd" ]; then cmd=$w; elif [ -z "$sub" ]; then sub=$w; fi ;;
        esac
    done
    case "$cmd" in
    "") COMPREPLY=($(compgen -W "site token enroll audit query help $global" -- "$cur")) ;;
    site)
        if [ -z "$sub" ]; then
            COMPREPLY=($(compgen -W "add list show disable enable revoke remove label token" \
                -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--label --ttl $global" -- "$cur"))
        fi
        ;;
    token)
        if [ -z "$sub" ]; then
            COMPREPLY=($(compgen -W "create list revoke" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--role --sites --ttl $global" -- "$cur"))
        fi
        ;;
    enroll)
        if [ -z "$sub" ]; then
            COMPREPLY=($(compgen -W "list cancel" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--site --all $global" -- "$cur"))
        fi
        ;;
    audit) COMPREPLY=($(compgen -W "--limit --before $global" -- "$cur")) ;;
    query)
        COMPREPLY=($(compgen -W "--service --sites --method --path --data --header --timeout
            --ttl --wait $global" -- "$cur"))
        ;;
    *) COMPREPLY=($(compgen -W "$global" -- "$cur")) ;;
    esac
}

complete -F _tether_hub tether-hub
complete -F _tether_site tether-site
complete -F _tetherctl tetherctl
