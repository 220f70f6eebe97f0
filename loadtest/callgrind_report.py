#!/usr/bin/env python3
"""Where a build's instructions go, from the callgrind dumps `instructions.py --keep` leaves.

Costs are per request: divided by `--per` (the requests a case sent, 1 000 by default). A dump
is one case of one build (`callgrind-<port>.out.<pid>.<part>`: part 1 is the first case asked
for, and so on; its `cmd:` line names the binary).

    callgrind_report.py functions DUMP [--top 40]           self and inclusive cost per function
    callgrind_report.py diff OLD NEW [--top 30]             what moved, function by function
    callgrind_report.py callers DUMP NAME                   who calls NAME, how often, at what cost
    callgrind_report.py callees DUMP NAME                   what NAME calls, how often, at what cost
    callgrind_report.py instructions DUMP BINARY NAME       NAME's instructions with their costs
                                                            (needs a dump made with --by-line)

NAME is a substring of the (demangled) function name. Why not `callgrind_annotate`: on these
dumps (all threads, zeroed counters, name compression) Debian's 3.19 puts every cost on
`__libc_start_main`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Profile:
    """One dump's costs: self per function and per instruction address, and its calls."""

    self_cost: Counter = field(default_factory=Counter)
    inclusive: Counter = field(default_factory=Counter)
    # (caller, callee) -> [calls, inclusive cost of those calls]
    calls: dict = field(default_factory=dict)
    # function -> Counter of address -> self cost (dumps with positions: instr)
    by_address: dict = field(default_factory=dict)
    call_sites: dict = field(default_factory=dict)
    # whether positions are instruction addresses (a --by-line dump), not source lines
    by_instruction: bool = False


def read(path: str) -> Profile:
    """Parses a callgrind dump: `fn=` and `cfn=` lines (with `(id) name` compression),
    `calls=` lines, whose next cost line is the call's inclusive cost, and cost lines
    (`position cost`, positions absolute, `+n`, `-n` or `*`)."""
    names: dict[str, str] = {}
    profile = Profile()
    fn = callee = None
    pending_calls: int | None = None
    address = 0

    def name(value: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", value)
        if not m:
            return value
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), value)

    with open(path, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if line.startswith("positions:"):
                profile.by_instruction = "instr" in line.split()[1:]
            elif line.startswith("fn="):
                fn, pending_calls = name(line[3:]), None
            elif line.startswith("cfn="):
                callee = name(line[4:])
            elif line.startswith("calls="):
                pending_calls = int(line[6:].split()[0])
            elif line and (line[0] in "+-*" or line[0].isdigit()):
                parts = line.split()
                if len(parts) < 2 or fn is None:
                    continue
                position, cost = parts[0], int(parts[1])
                if position.startswith("0x"):
                    address = int(position, 16)
                elif position[0] == "+":
                    address += int(position[1:])
                elif position[0] == "-":
                    address -= int(position[1:])
                elif position != "*":
                    address = int(position)
                if pending_calls is not None:
                    entry = profile.calls.setdefault((fn, callee), [0, 0])
                    entry[0] += pending_calls
                    entry[1] += cost
                    if callee != fn:
                        profile.inclusive[fn] += cost
                    profile.call_sites.setdefault(fn, Counter())[address] += cost
                    pending_calls = None
                else:
                    profile.self_cost[fn] += cost
                    profile.inclusive[fn] += cost
                    profile.by_address.setdefault(fn, Counter())[address] += cost
    return profile


def functions(args: argparse.Namespace) -> None:
    p = read(args.dump)
    print(f"total {sum(p.self_cost.values()) / args.per:,.0f} per request\n")
    print(f"{'self':>9} {'inclusive':>10}  function")
    for fn, cost in p.self_cost.most_common(args.top):
        print(f"{cost / args.per:9,.0f} {p.inclusive[fn] / args.per:10,.0f}  {fn[:150]}")


def diff(args: argparse.Namespace) -> None:
    old, new = read(args.old).self_cost, read(args.new).self_cost
    print(f"total {sum(old.values()) / args.per:,.0f} -> {sum(new.values()) / args.per:,.0f} per request\n")
    moved = {fn: new[fn] - old[fn] for fn in set(old) | set(new)}
    for fn, change in sorted(moved.items(), key=lambda m: -abs(m[1]))[: args.top]:
        print(f"{change / args.per:+8,.0f}  {old[fn] / args.per:8,.0f} -> {new[fn] / args.per:8,.0f}  {fn[:130]}")


def related(args: argparse.Namespace, callers: bool) -> None:
    p = read(args.dump)
    rows = Counter()
    counts = Counter()
    for (caller, callee), (calls, cost) in p.calls.items():
        named, other = (callee, caller) if callers else (caller, callee)
        if named and other and args.name in named:
            rows[other] += cost
            counts[other] += calls
    for other, cost in rows.most_common(40):
        print(f"{cost / args.per:8,.0f} {counts[other] / args.per:6.2f}x  {other[:150]}")


def instructions(args: argparse.Namespace) -> None:
    p = read(args.dump)
    if not p.by_instruction:
        raise SystemExit(f"{args.dump} has costs by source line: make it with instructions.py --by-line")
    chosen = [fn for fn in p.by_address if args.name in fn]
    if not chosen:
        raise SystemExit(f"no function matching {args.name!r} in {args.dump}")
    for fn in chosen:
        costs, sites = p.by_address[fn], p.call_sites.get(fn, Counter())
        low, high = min(costs), max(costs) + 16
        listing = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", "-C", f"--start-address={low:#x}", f"--stop-address={high:#x}",
             args.binary],
            capture_output=True, text=True, check=True).stdout
        print(f"== {fn[:150]}: self {sum(costs.values()) / args.per:,.1f} per request")
        for line in listing.splitlines():
            m = re.match(r"\s*([0-9a-f]+):\s*(.*)", line)
            if not m:
                continue
            at = int(m.group(1), 16)
            cost, called = costs.get(at, 0) / args.per, sites.get(at, 0) / args.per
            if cost >= args.min or called >= args.min:
                call = f"(+{called:.0f})" if called else ""
                print(f"{cost:7.1f} {call:>8} {at:x}: {m.group(2)[:110]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per", type=float, default=1000, help="requests the case sent (default 1000)")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("functions")
    s.add_argument("dump")
    s.add_argument("--top", type=int, default=40)
    s = sub.add_parser("diff")
    s.add_argument("old")
    s.add_argument("new")
    s.add_argument("--top", type=int, default=30)
    for command in ("callers", "callees"):
        s = sub.add_parser(command)
        s.add_argument("dump")
        s.add_argument("name")
    s = sub.add_parser("instructions")
    s.add_argument("dump")
    s.add_argument("binary")
    s.add_argument("name")
    s.add_argument("--min", type=float, default=0.5, help="leave out instructions cheaper than this per request")
    args = ap.parse_args()
    match args.command:
        case "functions":
            functions(args)
        case "diff":
            diff(args)
        case "callers":
            related(args, callers=True)
        case "callees":
            related(args, callers=False)
        case "instructions":
            instructions(args)


if __name__ == "__main__":
    main()
