"""Keep a device call under its 64 MiB: set tracked folders the runs do not read aside, and restore them.

A call carries the checkout's tracked files and its untracked files that git does not ignore,
plus the payload named in ``carry``; the zoo's ``presets/`` alone is over 100 MB. ``aside``
untracks the named paths (``git rm --cached``: the files stay on disk) and lists them in
``.git/info/exclude`` between marker lines, so nothing of them travels; ``restore`` puts both back.
Between the two, commit nothing.

    python tools/device/slim.py size .gpu_cn                 # MiB that would travel with that carry
    python tools/device/slim.py aside presets docs stages/ae-ct-f4c3-s1
    python tools/device/slim.py restore
"""
import argparse
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
EXCLUDE = REPO / ".git" / "info" / "exclude"
BEGIN, END = "# slim.py: set aside for a device call (python tools/device/slim.py restore)", "# end slim.py"
LIMIT_MIB = 64


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout


def travelling_bytes(carry) -> int:
    """Bytes of what a call sends: tracked and untracked-not-ignored files, and the carried paths."""
    names = git("ls-files", "-z").split("\0") + git("ls-files", "-z", "-o", "--exclude-standard").split("\0")
    files = {REPO / n for n in names if n and (REPO / n).is_file()}
    for path in carry:
        root = REPO / path
        files |= {root} if root.is_file() else {f for f in root.rglob("*") if f.is_file()}
    return sum(f.stat().st_size for f in files)


def set_aside() -> list[str]:
    """The paths a previous ``aside`` left in the exclude file."""
    lines = EXCLUDE.read_text().splitlines() if EXCLUDE.exists() else []
    if BEGIN not in lines:
        return []
    block = lines[lines.index(BEGIN) + 1:lines.index(END)]
    return [line.strip("/") for line in block]


def aside(paths) -> None:
    if set_aside():
        sys.exit(f"paths are already set aside ({', '.join(set_aside())}): run `restore` first")
    missing = [p for p in paths if not git("ls-files", "--", p).strip()]
    if missing:
        sys.exit(f"not tracked, nothing to set aside: {', '.join(missing)}")
    git("rm", "-r", "-q", "--cached", "--", *paths)
    text = EXCLUDE.read_text() if EXCLUDE.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    patterns = [f"/{p.strip('/')}/" if (REPO / p).is_dir() else f"/{p}" for p in paths]
    EXCLUDE.write_text(text + "\n".join([BEGIN, *patterns, END]) + "\n")


def restore() -> None:
    paths = set_aside()
    if not paths:
        sys.exit("nothing is set aside")
    git("reset", "-q", "--", *paths)
    lines = EXCLUDE.read_text().splitlines()
    EXCLUDE.write_text("\n".join(lines[:lines.index(BEGIN)] + lines[lines.index(END) + 1:]) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("size", help="MiB a call would send").add_argument("carry", nargs="*", help="the call's carry")
    sub.add_parser("aside", help="untrack paths for a call").add_argument("paths", nargs="+")
    sub.add_parser("restore", help="track the set-aside paths again")
    args = p.parse_args()
    if args.command == "aside":
        aside(args.paths)
    elif args.command == "restore":
        restore()
    carry = getattr(args, "carry", [])
    mib = travelling_bytes(carry) / 2**20
    print(f"a call would send {mib:.1f} MiB{' with ' + ', '.join(carry) if carry else ''} "
          f"(limit {LIMIT_MIB}){'' if mib <= LIMIT_MIB else ': too much, set more aside'}")
    if set_aside():
        print("set aside (restore before committing):", ", ".join(set_aside()))


if __name__ == "__main__":
    main()
