#!/usr/bin/env python3
# Integration: the command lines of tether-hub, tether-site and tetherctl: --help on every subcommand, --version, unknown options, missing values, both option spellings, did you mean, man pages and bash completion from the same commands, one site.conf loader.
# SPDX-License-Identifier: MIT
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal  # noqa: E402

HUB_CMDS = ["init", "run", "leave", "version", "help"]
SITE_CMDS = ["enroll", "run", "doctor", "rotate-key", "status", "version", "help"]
CTL_CMDS = ["site add", "site list", "site show", "site disable", "site enable", "site revoke",
            "site remove", "site label", "site token", "site watch", "token create", "token list",
            "token revoke", "enroll list", "enroll cancel", "audit", "query", "query list",
            "query show", "query cancel", "connect", "help"]

# A typo and the suggestion it must get (one line on stderr, exit 2).
TYPOS = [(["tether-hub", "rn"], "unknown command \"rn\"; did you mean 'run'?"),
         (["tether-hub", "run", "--listn", "x"], "unknown option '--listn'; did you mean "
          "'--listen'?"),
         (["tether-site", "stauts"], "unknown command \"stauts\"; did you mean 'status'?"),
         (["tether-site", "run", "--servce", "a=b"], "did you mean '--service'?"),
         (["tether-site", "doctor", "--tmeout", "3"], "did you mean '--timeout'?"),
         (["tetherctl", "sit", "list"], "unknown command 'sit'; did you mean 'site'?"),
         (["tetherctl", "site", "lst"], "unknown command 'site lst'; did you mean 'site list'?"),
         (["tetherctl", "query", "cancle", "x"], "did you mean 'query cancel'?"),
         (["tetherctl", "query", "--sevice", "x"], "unknown option '--sevice'; did you mean "
          "'--service'?"),
         (["tetherctl", "site", "re", "x"], "did you mean 'site revoke' or 'site remove'?")]


def completions(h, words):
    """What deploy/completion/tether.bash offers after words (the last one
    being completed)."""
    fn = {"tether-hub": "_tether_hub", "tether-site": "_tether_site"}.get(words[0], "_tetherctl")
    script = ("source %s; COMP_WORDS=(%s); COMP_CWORD=%d; %s; echo \"${COMPREPLY[*]}\""
              % (os.path.join(h.src_dir, "deploy", "completion", "tether.bash"),
                 " ".join("'%s'" % w for w in words), len(words) - 1, fn))
    r = h.run(["bash", "-c", script])
    return r.stdout.split()

# A subcommand and one of its options that takes a value.
VALUE_OPTS = [("tether-hub", "init", "--state"), ("tether-hub", "init", "--public"),
              ("tether-hub", "run", "--state"), ("tether-hub", "run", "--ping-interval"),
              ("tether-hub", "leave", "--state"),
              ("tether-site", "enroll", "--state"), ("tether-site", "run", "--service"),
              ("tether-site", "doctor", "--timeout"), ("tether-site", "rotate-key", "--hub"),
              ("tetherctl", "site add x", "--label"), ("tetherctl", "token create x", "--role"),
              ("tetherctl", "enroll list", "--site"), ("tetherctl", "audit", "--limit"),
              ("tetherctl", "query", "--service"), ("tetherctl", "site list", "--config"),
              ("tetherctl", "query list", "--limit"), ("tetherctl", "site watch", "--hub")]


def version(h):
    with open(os.path.join(h.src_dir, "CMakeLists.txt")) as f:
        m = re.search(r"project\(tether VERSION ([0-9.]+)", f.read())
    if m is None:
        raise Fatal("no project VERSION in CMakeLists.txt")
    return m.group(1)


def one_line(text):
    return len(text.strip().splitlines()) == 1


def main(h):
    ver = version(h)
    progs = {"tether-hub": HUB_CMDS, "tether-site": SITE_CMDS, "tetherctl": CTL_CMDS}
    for prog, cmds in progs.items():
        exe = h.bin(prog)
        for flag in ("--help", "-h"):
            r = h.run([exe, flag])
            h.check(r.rc == 0 and re.search(r"(?i)usage:", r.stdout) and not r.stderr,
                    "%s %s: exit 0, usage on stdout" % (prog, flag), r)
        for argv in (["--version"], ["version"]) if prog != "tetherctl" else (["--version"],):
            r = h.run([exe] + argv)
            h.check(r.rc == 0 and re.fullmatch(r"%s %s \(wolfSSL [^)]+\)\n" % (
                re.escape(prog), re.escape(ver)), r.stdout) is not None,
                "%s %s prints '%s %s (wolfSSL BUILD)'" % (prog, argv[0], prog, ver), r)
        r = h.run([exe, "--no-such-opt"])
        h.check(r.rc == 2 and one_line(r.stderr) and "'--no-such-opt'" in r.stderr
                and "--help" in r.stderr and not r.stdout,
                "%s --no-such-opt: exit 2, one line naming it and --help" % prog, r)
        for cmd in cmds:
            words = cmd.split()
            for flag in ("--help", "-h"):
                r = h.run([exe] + words + [flag])
                h.check(r.rc == 0 and re.search(r"(?i)usage: %s %s\b" % (
                    re.escape(prog), re.escape(cmd)), r.stdout) is not None and not r.stderr,
                    "%s %s %s: exit 0, usage naming the subcommand" % (prog, cmd, flag), r)
            if cmd == "help":
                continue
            r = h.run([exe] + words + ["--no-such-opt=1"])
            h.check(r.rc == 2 and one_line(r.stderr) and "'--no-such-opt'" in r.stderr
                    and "'%s %s --help'" % (prog, cmd) in r.stderr and not r.stdout,
                    "%s %s --no-such-opt: exit 2, names it and '%s %s --help'" % (
                        prog, cmd, prog, cmd), r)

    for prog, cmd, opt in VALUE_OPTS:
        r = h.run([h.bin(prog)] + cmd.split() + [opt])
        h.check(r.rc == 2 and one_line(r.stderr)
                and "option '%s' needs a value" % opt in r.stderr,
                "%s %s %s (no value): exit 2, says it needs a value" % (prog, cmd, opt), r)

    hub, site, ctl = h.bin("tether-hub"), h.bin("tether-site"), h.bin("tetherctl")

    # Did you mean: a typo in a command word or option names the likely one.
    for argv, want in TYPOS:
        r = h.run([h.bin(argv[0])] + argv[1:])
        h.check(r.rc == 2 and one_line(r.stderr) and want in r.stderr and not r.stdout,
                "%s: exit 2, '%s'" % (" ".join(argv), want), r)
    r = h.run([ctl, "query", "xyzzy"])
    h.check(r.rc == 2 and "unknown command 'query xyzzy'" in r.stderr
            and "did you mean" not in r.stderr, "no suggestion when nothing is close", r)
    r = h.run([ctl, "query", "--help"])
    h.check(r.rc == 0 and all("tetherctl query %s" % w in r.stdout
                              for w in ("list", "show ID", "cancel ID")),
            "tetherctl query --help also lists query list, show and cancel", r)

    # The man pages are made from the programs' --help by help2man: every
    # command is in them, the new ones too.
    man = os.path.join(h.bin_dir, "man")
    if os.path.isdir(man):
        for prog, cmds in progs.items():
            with open(os.path.join(man, prog + ".1")) as f:
                page = f.read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
            missing = [c for c in cmds if c not in ("help", "version") and c not in page]
            h.check(not missing, "%s(1) names every command" % prog, missing)
    else:
        h.note("no man pages in %s (help2man missing?): not checked" % man)

    # Bash completion knows every command word of tetherctl.
    for cmd in CTL_CMDS:
        words = cmd.split()
        got = completions(h, ["tetherctl"] + words[:-1] + [words[-1][:-1]])
        h.check(words[-1] in got, "completion: tetherctl %s<TAB> offers '%s'" % (
            " ".join(words[:-1] + [words[-1][:-1]]), words[-1]), got)
    for words, want in ((["tetherctl", "query", "list", "--"], {"--limit", "--before"}),
                        (["tetherctl", "token", "create", "x", "--"], {"--services", "--role"}),
                        (["tetherctl", "token", "create", "x", "--role", ""], {"admin", "user"}),
                        (["tetherctl", "connect", "a", "b", "--"], {"--listen", "--stdio"}),
                        (["tether-site", "st"], {"status"}),
                        (["tether-hub", "run", "--log-format", ""], {"text", "json"})):
        got = completions(h, words)
        h.check(want <= set(got), "completion: %s<TAB> offers %s" % (" ".join(words),
                                                                    sorted(want)), got)

    # Both spellings of an option with a value, and an abbreviation.
    for n, argv in enumerate((["--state", "ST", "--name", "localhost"],
                              ["--state=ST", "--name=localhost"],
                              ["--sta", "ST", "--na=localhost"])):
        d = h.path("hubstate%d" % n)
        argv = [a.replace("ST", d) for a in argv]
        r = h.run([hub, "init"] + argv)
        h.check(r.rc == 0 and os.path.exists(os.path.join(d, "hub.db")),
                "tether-hub init %s creates the state" % " ".join(argv), r)
    missing = h.path("nowhere")
    for argv in (["--state", missing], ["--state=" + missing]):
        r = h.run([site, "run"] + argv)
        h.check(r.rc == 1 and "site.conf not found" in r.stderr,
                "tether-site run %s reads that state directory" % " ".join(argv), r)
    for argv in (["--label", "nokv"], ["--label=nokv"]):
        r = h.run([ctl, "site", "add", "x"] + argv)
        h.check(r.rc == 2 and '--label expects KEY=VALUE, got "nokv"' in r.stderr,
                "tetherctl site add x %s passes the value on" % " ".join(argv), r)
    r = h.run([ctl, "--json=yes", "site", "list"])
    h.check(r.rc == 2 and "'--json' takes no value" in r.stderr, "--json=yes: takes no value", r)
    r = h.run([ctl, "query", "--s", "x"])
    h.check(r.rc == 2 and "ambiguous option '--s'" in r.stderr,
            "tetherctl query --s: ambiguous (--service, --sites)", r)
    r = h.run([ctl, "site", "list", "--label", "a=b"])
    h.check(r.rc == 2 and "'--label' for 'site list'" in r.stderr,
            "an option of another command is refused naming the command", r)
    r = h.run([ctl, "site", "show", "--", "--json"])
    h.check(r.rc == 2 and 'invalid site name "--json"' in r.stderr,
            "after --, an option-like word is an argument", r)
    r = h.run([ctl, "help", "site", "add"])
    h.check(r.rc == 0 and r.stdout.startswith("Usage: tetherctl site add NAME"),
            "tetherctl help site add: that command's usage", r)

    # One site.conf loader: run, doctor and rotate-key refuse the same bad
    # line the same way, before any network traffic.
    state = h.mkdir("site")
    good = ("site = s1\nhub = 127.0.0.1:1\n"
            "hub_pin = sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    for line, key in (("ping_interval = soon", "ping_interval"),
                      ("source_port = 70000", "source_port"),
                      ("hub_pin = md5//x", "hub_pin")):
        with open(os.path.join(state, "site.conf"), "w") as f:
            f.write(good + line + "\n")
        for cmd in ("run", "doctor", "rotate-key"):
            r = h.run([site, cmd, "--state", state], timeout=20)
            h.check(r.rc == 1 and re.search(r"site\.conf:4: bad %s " % key, r.stderr)
                    is not None, "tether-site %s refuses '%s' at its line" % (cmd, line), r)
    with open(os.path.join(state, "site.conf"), "w") as f:
        f.write("hub = 127.0.0.1:1\n")
    for cmd in ("run", "doctor", "rotate-key"):
        r = h.run([site, cmd, "--state", state], timeout=20)
        h.check(r.rc == 1 and "missing: site hub_pin" in r.stderr,
                "tether-site %s names the missing keys" % cmd, r)


Harness.main("test_cli", main, tools=())
