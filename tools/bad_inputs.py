"""Try transferkit's command line on bad inputs and faults, as a new user would; print a table.

Each case runs the real CLI in a fresh process on files made here (bundled Fashion-MNIST
images, generated texts and tones), and records the exit status, the time to the answer,
the peak memory (RSS of that process) and the first line of the message. Each case has a
class: "clear error" (exit 2, one `error:` line that contains what the case names: the file,
row or option; no option the command lacks is suggested), "clean skip" (exit 0, and what was
left out is said) or "handled" (the expected exit status, the expected output). Cases that
could lose data check afterwards that every file is still there. Verdicts: ok, traceback!,
LOST FILES, unclear (the message lacks what it should name), silent (a skip not said), or
the unexpected exit status.

Run: nice -n 10 .venv/bin/python tools/bad_inputs.py [--out results.md] [-k NAME]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bad_inputs_cases import ERR, OK, Case, original
from bad_inputs_cases2 import data_loss, messages, misreads, tracebacks
from bad_inputs_data import CLI, make

ENV = {**os.environ, "COLUMNS": "200"}
# the command runs with its address space limited to 6 GiB, so a runaway allocation fails
# instead of taking the machine's memory; its peak RSS is reported
PEAK = ("import resource, subprocess, sys; lim = lambda: resource.setrlimit("
        "resource.RLIMIT_AS, (6 << 30, 6 << 30)); r = subprocess.run(sys.argv[1:], "
        "preexec_fn=lim); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(r.returncode)")


def _options() -> dict[str, set[str]]:
    """The long options of every command."""
    import typer.main

    from transferkit.cli import app

    group = typer.main.get_command(app)
    return {name: {o for p in cmd.params for o in p.opts if o.startswith("--")}
            for name, cmd in group.commands.items()}


OPTIONS = _options()


def foreign_options(line: str, command: str) -> list[str]:
    """Options a message suggests that the command (or the command it names) lacks."""
    bad = []
    for m in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
        named = [w for w in re.findall(r"transferkit (\w+)", line[: m.start()])
                 if w in OPTIONS]
        cmd = named[-1] if named else command
        if m.group() not in OPTIONS.get(cmd, set()) | {"--help", "--version"}:
            bad.append(m.group())
    return bad


def run_case(c: Case) -> tuple[str, str, int, str, str, str, float]:
    """(name, class, exit, seconds, verdict, message, peak MB) of one case."""
    t0 = time.perf_counter()
    res = subprocess.run([*CLI[:1], "-c", PEAK, *CLI, *c.argv], capture_output=True,
                         text=True, timeout=900, env=ENV)
    took = time.perf_counter() - t0
    *err_lines, peak_kb = res.stderr.rstrip().splitlines() or ["0"]
    err = "\n".join(err_lines)
    text = " ".join((res.stdout + "\n" + err).split())
    lines = [ln for ln in err_lines if ln.strip()]
    first = next((ln for ln in lines if ln.startswith("error:")), None)
    shown = first or next((ln for ln in (err_lines + res.stdout.splitlines())
                           if c.needle and c.needle in ln), None) or \
        next((ln for ln in lines if ln.startswith("note:")), lines[-1] if lines else "")
    peak = int(peak_kb) / 1024 if peak_kb.isdigit() else 0.0
    verdict = _verdict(c, res.returncode, first, text, err)
    if verdict == "ok" and c.max_mb is not None and peak > c.max_mb:
        verdict = f"peak {peak:.0f} MB > {c.max_mb:.0f}"
    return (c.name, c.kind, res.returncode, f"{took:.1f}", verdict, shown, peak)


def _verdict(c: Case, rc: int, first: str | None, text: str, err: str) -> str:
    if "Traceback" in err:
        return "traceback!"
    problem = c.check() if c.check is not None else None
    if problem:
        return problem
    if c.kind == ERR:
        if rc != 2:
            return f"exit {rc}"
        if first is None:
            return "no error line"
        if c.needle and c.needle not in text:
            return "unclear"
        bad = foreign_options(first, c.argv[0])
        if bad:
            return f"suggests {', '.join(bad)}"
    else:
        if rc != c.code:
            return f"exit {rc}"
        if c.needle and c.needle not in text:
            return "silent" if c.kind != OK else "unexpected output"
    if c.absent and c.absent in text:
        return f"printed {c.absent!r}"
    return "ok"


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 300) -> bool:
    deadline = time.time() + limit
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return proc.poll() is None


def specials(p: SimpleNamespace) -> list[tuple]:
    """Kills, moves, interrupts and a second concurrent writer."""
    rows = []
    run, r = p.run, p.root
    train = ["--strategy", "finetune", "--backbone", "cnn", "--image-size", "16",
             "--epochs", "6", "--seed", "0"]
    # a kill in the middle of an --overwrite replacement
    proc = subprocess.Popen([*CLI, "fit", str(p.sample), "--out", str(run), "--overwrite",
                             *train], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = (run / "metrics.json").read_bytes()
    _wait_for(r / "run.partial" / "checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    intact = (run / "metrics.json").read_bytes() == before
    rows.append(("SIGKILL during an --overwrite run", OK, -9, "-", "ok" if intact else
                 "LOST FILES", "old run intact" if intact else "old run lost", 0.0))
    # killed, moved, an unrelated run put at the old path: resume finishes where it now is
    runs = r / "runs"
    proc = subprocess.Popen([*CLI, "fit", str(p.good), "--out", str(runs / "a"), *train],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(runs / "a" / "checkpoints" / "train" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    shutil.move(str(runs / "a"), str(runs / "b"))
    shutil.copytree(p.run, runs / "a")
    (runs / "a" / "notes.txt").write_text("another run, with notes")
    from bad_inputs_cases import unchanged

    keep = unchanged(runs / "a")
    for name, argv, kind, needle in (
            ("resume a moved run with other options", ["fit", "--resume", str(runs / "b"),
                                                       "--epochs", "20", "--lr", "0.1"], ERR,
             "--epochs 20 (the run: 6)"),
            ("resume a moved run (unrelated run at the old path)",
             ["fit", "--resume", str(runs / "b")], OK, None)):
        row = run_case(Case(name, argv, kind, needle=needle, check=keep))
        if kind == OK and not (runs / "b" / "report.html").is_file():
            row = (*row[:4], "not finished where it is", *row[5:])
        rows.append(row)
    rows.append(_second_writer(p))
    rows += _interrupts(p, train)
    return rows


def _second_writer(p: SimpleNamespace) -> tuple:
    """A second command writing the same --out while the first holds it."""
    from transferkit.runs.rundir import out_lock

    out = p.root / "busy"
    with out_lock(out):
        row = run_case(Case("a second writer on the same --out", [
            "fit", str(p.good), "--out", str(out), "--overwrite", "--backbone", "pixels"],
            needle="in use by another transferkit command"))
    return row


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default action (this tool started in
    the background by a shell without job control ignores SIGINT, and its children would
    inherit that: the Ctrl-C cases then finished as if never interrupted)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupts(p: SimpleNamespace, train: list[str]) -> list[tuple]:
    rows = []
    for name, argv, marker, needle, gone in (
            ("Ctrl-C after a checkpoint", ["fit", str(p.good), "--out",
                                           str(p.root / "int1"), *train],
             p.root / "int1" / "checkpoints" / "train" / "checkpoint.pt",
             "transferkit fit --resume", False),
            ("Ctrl-C before anything was saved", ["fit", str(p.good), "--out",
                                                  str(p.root / "int2")],
             p.root / "int2", "nothing was left behind", True)):
        t0 = time.perf_counter()
        proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=ENV,
                                preexec_fn=_default_sigint)
        alive = _wait_for(marker, proc)
        if alive:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
        said = next((ln for ln in err.splitlines() if ln.startswith("interrupted")), "")
        ok = (alive and proc.returncode == 130 and needle in said
              and (not gone or not marker.exists()))
        verdict = "ok" if ok else ("finished first" if not alive else "traceback!"
                                   if "Traceback" in err else "silent")
        rows.append((name, OK, proc.returncode, f"{time.perf_counter() - t0:.1f}", verdict,
                     said, 0.0))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    ap.add_argument("-k", default=None, help="run only the cases whose name contains this")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tk-bad-"))
    p = make(root)
    cases = [*original(p), *data_loss(p), *tracebacks(p), *misreads(p), *messages(p)]
    rows = []
    for c in cases:
        if args.k and args.k not in c.name:
            continue
        row = run_case(c)
        rows.append(row)
        print(f"{row[0]}: {row[4]} (exit {row[2]}, {row[3]} s, {row[6]:.0f} MB) "
              f"{row[5][:160]}", flush=True)
    if not args.k:
        rows += specials(p)
    table = ["| case | class | exit | seconds | peak MB | verdict | message |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {n} | {k} | {c} | {t} | {f'{m:.0f}' if m else '-'} | {v} | "
              f"{msg.replace(str(root), '$TMP').replace('|', '/')[:160]} |"
              for n, k, c, t, v, msg, m in rows]
    bad = [r for r in rows if r[4] != "ok"]
    summary = (f"\n{len(rows)} cases: {len(rows) - len(bad)} ok"
               + "".join(f"; {r[0]}: {r[4]}" for r in bad) + "\n")
    text = "\n".join(table) + "\n" + summary
    print(text)
    if args.out:
        args.out.write_text(text)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
