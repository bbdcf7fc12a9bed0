"""The `ikev2` command: a thin argparse front over the tools and the service.

ikev2 daemon --config FILE [--control PATH] [--log-format console|json] [--log-level LEVEL]
             [--key-log FILE] [--kernel auto|xfrm|memory] [--workers N]
ikev2 up NAME [--child C|--no-child] | down NAME|ID | rekey ID [--child SPI|--reauth]
      | list-sas [--json] | reload | redirect ID --to ADDR | list-pools [--json]
      (each with [--control PATH])
ikev2 decode FILE [--keys TABLE]
ikev2 demo
ikev2 check-config FILE                       validate without starting (exit 0, or 1 and why)
ikev2 list-conns [--config FILE] [--json] | list-certs [--config FILE] [--json]
ikev2 systemd-unit [--config FILE] [--exec PATH]   print the systemd unit file
ikev2 import-swanctl swanctl.conf [--secrets FILE ...] > ikev2.toml
ikev2 completion bash    a bash completion script (source it, or put it in bash-completion's dir)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def _cmd_decode(args: argparse.Namespace) -> int:
    from .tools.decode import run_decode

    return run_decode(args.file, keys=args.keys, out=sys.stdout)


def _cmd_daemon(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .service.daemon import DaemonOptions, run_daemon

    options = DaemonOptions(
        config=args.config,
        control=args.control,
        log_format=args.log_format,
        log_level=args.log_level,
        key_log=args.key_log,
        kernel=args.kernel,
        workers=args.workers,
    )
    try:
        return run_daemon(options)
    except ConfigError as exc:
        print(f"ikev2: config error: {exc}", file=sys.stderr)
        return 2


def _workers(text: str) -> int:
    """`--workers N` (1..256) or `auto` (one per CPU), like [daemon] workers."""
    import os

    if text == "auto":
        return max(1, min(os.cpu_count() or 1, 256))
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number from 1 to 256, or auto")
    return int(text)


def _control_path(args: argparse.Namespace) -> str:
    from .config import DEFAULT_CONTROL_SOCKET

    return str(args.control or DEFAULT_CONTROL_SOCKET)


def _ask(
    args: argparse.Namespace, message: dict[str, Any], timeout: float = 70.0
) -> dict[str, Any]:
    from .service.control import ControlError, request

    try:
        return request(_control_path(args), message, timeout)
    except ControlError as exc:
        return {"ok": False, "error": str(exc)}


def _fail(answer: dict[str, Any]) -> int:
    print(f"ikev2: {answer.get('error', 'failed')}", file=sys.stderr)
    return 1


def format_sas(sas: list[dict[str, Any]]) -> str:
    from .service.driver import format_sas as render

    return render(sas)


def _cmd_up(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"cmd": "up", "name": args.name, "timeout": args.timeout}
    if args.child:
        message["child"] = args.child  # a child under the IKE SA we hold (RFC 6023)
    if args.no_child:
        message["no_child"] = True  # a childless IKE SA (RFC 6023)
    answer = _ask(args, message, args.timeout * 2 + 5)
    if not answer.get("ok"):
        return _fail(answer)
    print(format_sas(answer.get("sas", [])))
    for warning in answer.get("warnings", []):
        print(f"ikev2: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "down", "target": args.target})
    if not answer.get("ok"):
        return _fail(answer)
    print(f"deleted IKE SA(s) {', '.join(str(i) for i in answer['deleted'])}")
    return 0


def _cmd_rekey(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"cmd": "rekey", "id": args.id}
    if args.child:
        message["child"] = args.child
    if args.reauth:
        message["reauth"] = True
    answer = _ask(args, message)
    if not answer.get("ok"):
        return _fail(answer)
    print("reauthentication started" if args.reauth else "rekeying started")
    return 0


def _cmd_redirect(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "redirect", "id": args.id, "to": args.to})
    if not answer.get("ok"):
        return _fail(answer)
    print(f"IKE SA {args.id}: peer redirected to {args.to}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "list-sas"})
    if not answer.get("ok"):
        return _fail(answer)
    sas = answer.get("sas", [])
    print(json.dumps(sas, indent=None if args.json else 2) if args.json else format_sas(sas))
    return 0


def _cmd_pools(args: argparse.Namespace) -> int:
    from .service.driver import format_pools

    answer = _ask(args, {"cmd": "list-pools"})
    if not answer.get("ok"):
        return _fail(answer)
    pools = answer.get("pools", [])
    print(json.dumps(pools) if args.json else format_pools(pools))
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "reload"})
    if not answer.get("ok"):
        return _fail(answer)
    print(f"reloaded: added {answer['added']}, removed {answer['removed']}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Load FILE as the daemon would (every key, every referenced file) and open nothing."""
    from .config import load_config
    from .errors import ConfigError

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"ikev2: config error: {exc}", file=sys.stderr)
        return 1
    conns = config.engine.connections
    children = sum(len(c.children) for c in conns)
    print(f"{args.file}: OK ({len(conns)} connections, {children} children)")
    return 0


def _cmd_listing(args: argparse.Namespace) -> int:
    """list-conns / list-certs: what the file configures, from the daemon's own loader."""
    from .config import load_config
    from .errors import ConfigError
    from .tools import listing

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ikev2: config error: {exc}", file=sys.stderr)
        return 1
    if args.command == "list-conns":
        items = listing.list_conns(config)
        text = listing.format_conns(items)
    else:
        items = listing.list_certs(config)
        text = listing.format_certs(items)
    print(json.dumps(items) if args.json else text)
    return 0


def _cmd_import_swanctl(args: argparse.Namespace) -> int:
    from .tools.import_swanctl import run_import

    return run_import(
        args.file,
        args.secrets or [],
        lambda text: print(text, end=""),
        lambda line: print(line, file=sys.stderr),
    )


_COMPLETION = """# bash completion for ikev2 (generated by `ikev2 completion bash`)
_ikev2() {
  local cur=${COMP_WORDS[COMP_CWORD]} opts
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%(commands)s" -- "$cur"))
    return
  fi
  case ${COMP_WORDS[1]} in
%(cases)s
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o filenames -F _ikev2 ikev2
"""


def completion_script(parser: argparse.ArgumentParser) -> str:
    """Subcommands and each one's options, read from the parser itself."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, command in sub.choices.items():
        options = sorted(o for a in command._actions for o in a.option_strings)
        cases.append(f'    {name}) opts="{" ".join(options)}" ;;')
    return _COMPLETION % {"commands": " ".join(sub.choices), "cases": "\n".join(cases)}


def _cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(build_parser()), end="")
    return 0


def _cmd_systemd_unit(args: argparse.Namespace) -> int:
    from .service.systemd import unit_text

    print(unit_text(args.exec, args.config), end="")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .service.demo import run_demo

    return run_demo(keep_logs=args.verbose, loopback=args.loopback)


def _with_control(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", metavar="PATH", help="control socket of the daemon")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikev2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    daemon = sub.add_parser("daemon", help="run the IKE daemon in the foreground")
    daemon.add_argument("--config", required=True, metavar="FILE", help="TOML configuration")
    _with_control(daemon)
    daemon.add_argument("--log-format", choices=("console", "json"))
    daemon.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    daemon.add_argument(
        "--key-log", metavar="FILE", help="append Wireshark key tables (FILE, FILE.esp_sa)"
    )
    daemon.add_argument("--kernel", choices=("auto", "xfrm", "memory"))
    daemon.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="responder processes sharing the ports (SO_REUSEPORT); overrides [daemon] workers",
    )
    daemon.set_defaults(handler=_cmd_daemon)

    up = sub.add_parser("up", help="establish a connection and wait for the result")
    up.add_argument("name")
    up.add_argument("--timeout", type=float, default=60.0)
    which = up.add_mutually_exclusive_group()
    which.add_argument(
        "--child", metavar="NAME", help="create this child under the IKE SA we hold (or a new one)"
    )
    which.add_argument(
        "--no-child", action="store_true", help="a childless IKE SA (RFC 6023); children later"
    )
    _with_control(up)
    up.set_defaults(handler=_cmd_up)

    down = sub.add_parser("down", help="delete IKE SAs by connection name or IKE SA id")
    down.add_argument("target", metavar="NAME|ID")
    _with_control(down)
    down.set_defaults(handler=_cmd_down)

    rekey = sub.add_parser("rekey", help="rekey an IKE SA, or one child with --child SPI")
    rekey.add_argument("id", type=int)
    rekey.add_argument("--child", metavar="SPI_IN", help="inbound SPI of the child (hex)")
    rekey.add_argument(
        "--reauth",
        action="store_true",
        help="reauthenticate: a new IKE SA with its children, then the old one deleted",
    )
    _with_control(rekey)
    rekey.set_defaults(handler=_cmd_rekey)

    redirect = sub.add_parser(
        "redirect", help="send the peer of an established IKE SA to another gateway (RFC 5685)"
    )
    redirect.add_argument("id", type=int)
    redirect.add_argument("--to", required=True, metavar="ADDR", help="IP address or FQDN")
    _with_control(redirect)
    redirect.set_defaults(handler=_cmd_redirect)

    list_sas = sub.add_parser("list-sas", help="show the IKE SAs and their children")
    list_sas.add_argument("--json", action="store_true", help="one JSON list")
    _with_control(list_sas)
    list_sas.set_defaults(handler=_cmd_list)
    list_pools = sub.add_parser("list-pools", help="show the address pools and their leases")
    list_pools.add_argument("--json", action="store_true", help="one JSON list")
    _with_control(list_pools)
    list_pools.set_defaults(handler=_cmd_pools)

    reload = sub.add_parser("reload", help="re-read the configuration (as SIGHUP)")
    _with_control(reload)
    reload.set_defaults(handler=_cmd_reload)

    decode = sub.add_parser(
        "decode", help="print every IKE message of a pcap, pcapng or hex dump as JSON lines"
    )
    decode.add_argument("file", help="capture file (pcap, pcapng) or hex dump")
    decode.add_argument(
        "--keys",
        metavar="TABLE",
        help="Wireshark ikev2_decryption_table: decrypt and verify SK payloads",
    )
    decode.set_defaults(handler=_cmd_decode)

    check = sub.add_parser("check-config", help="validate a configuration file without starting")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_cmd_check_config)

    for name, what in (("list-conns", "connections"), ("list-certs", "certificates")):
        listing = sub.add_parser(name, help=f"show the {what} a configuration file sets up")
        listing.add_argument("--config", default="/etc/ikev2/ikev2.toml", metavar="FILE")
        listing.add_argument("--json", action="store_true", help="one JSON list")
        listing.set_defaults(handler=_cmd_listing)

    swanctl = sub.add_parser(
        "import-swanctl",
        help="translate strongSwan's swanctl.conf into our TOML (stdout); what cannot be "
        "carried over is named on stderr",
    )
    swanctl.add_argument("file", metavar="swanctl.conf")
    swanctl.add_argument(
        "--secrets", action="append", metavar="FILE", help="more files with secrets { } sections"
    )
    swanctl.set_defaults(handler=_cmd_import_swanctl)

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash",))
    completion.set_defaults(handler=_cmd_completion)

    unit = sub.add_parser("systemd-unit", help="print the systemd unit file (Type=notify)")
    unit.add_argument("--config", default="/etc/ikev2/ikev2.toml", metavar="FILE")
    unit.add_argument(
        "--exec", metavar="PATH", help="the ikev2 program (default: the one running now)"
    )
    unit.set_defaults(handler=_cmd_systemd_unit)

    demo = sub.add_parser("demo", help="two daemons negotiate an IKE SA with a child, then stop")
    demo.add_argument("--verbose", action="store_true", help="print the daemons' logs too")
    demo.add_argument("--loopback", action="store_true", help="loopback even as root")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
