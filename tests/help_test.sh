#!/usr/bin/env bash
# help_test.sh RINGKEEP [SOURCE_ROOT] -- the help cannot drift from the
# parser.  What the code accepts is read from the source: the commands
# main.c dispatches on, the subcommands each cli/cmd_*.c compares argv[1]
# with, and every long option of every getopt_long table (the command a
# table belongs to: the cmd_* function holding or naming it, else the
# file's).  Each must be named in three places: `ringkeep help` (the
# command's entries), `ringkeep COMMAND --help`, and the man page's
# COMMANDS section (docs/ringkeep.1.scd, the command's paragraphs).  Prints
# every one missing and exits 1 if any is.
set -euo pipefail
bin=$1
root=${2:-$(dirname "$0")/..}

exec /usr/bin/python3 - "$bin" "$root" <<'EOF'
import os, re, subprocess, sys

bin, root = sys.argv[1], sys.argv[2]
cli = os.path.join(root, "cli")

def run(args):
    p = subprocess.run([bin] + args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"help_test: ringkeep {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p.stdout

def strip_comments(text):
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)

# ---- what the code accepts
main_c = strip_comments(open(os.path.join(cli, "main.c")).read())
commands = [c for c in re.findall(r'strcmp\(argv\[1\], "([a-z][a-z-]*)"\)', main_c)]
if len(commands) < 10:
    sys.exit(f"help_test: found only {commands} in main.c: has its dispatch changed shape?")

def command_of(func, stem):
    """The command a function of cli/cmd_STEM.c parses for."""
    if not func.startswith("cmd_"):
        func = "cmd_" + stem
    special = {"cmd_checkpoint_import": "checkpoint import", "cmd_import": "checkpoint import"}
    return special.get(func, func[4:].replace("_", "-"))

subcommands = {}  # command -> [subcommand]
options = {}      # command -> {long option}
for name in sorted(os.listdir(cli)):
    m = re.fullmatch(r"cmd_(\w+)\.c", name)
    if not m:
        continue
    stem = m.group(1)
    src = strip_comments(open(os.path.join(cli, name)).read())
    # each function's body: from a definition at column 0 to the next
    funcs = [(f.start(), f.group(1)) for f in re.finditer(r"^\w[\w \*]*?\b(\w+)\([^;{]*\)\s*\{", src, re.M)]
    def func_at(pos):
        owner = None
        for start, f in funcs:
            if start <= pos:
                owner = f
        return owner
    for t in re.finditer(r"struct option (\w+)\[\]\s*=\s*\{(.*?)\};", src, re.S):
        owner = func_at(t.start())
        if owner is None:  # a table at file level: the function naming it
            users = [func_at(t.end() + u.start()) for u in re.finditer(r"\b%s\b" % t.group(1), src[t.end():])]
            owner = users[0] if users else "cmd_" + stem
        cmd = command_of(owner, stem)
        names = re.findall(r'\{"([a-z][a-z0-9-]*)",\s*\w+_argument', t.group(2))
        if not names:
            sys.exit(f"help_test: {name}: table {t.group(1)} has no options I can read")
        options.setdefault(cmd, set()).update(n for n in names if n != "help")
    for s in re.findall(r'strcmp\(argv\[1\], "([a-z][a-z-]*)"\)', src):
        if s != "help":
            cmd = command_of("", stem)
            subcommands.setdefault(cmd, [])
            if s not in subcommands[cmd]:
                subcommands[cmd].append(s)

# ---- where it must be said
def entries(lines, start_re):
    """[(first words, text)] of entries: a line matching start_re begins
    one, the lines up to the next such line (or a blank line) continue it."""
    out, words, text = [], None, []
    for line in lines:
        m = start_re.match(line)
        if m or not line.strip():
            if words is not None:
                out.append((words, "\n".join(text)))
            words, text = (m.group(1).split() if m else None), ([line] if m else [])
        elif words is not None:
            text.append(line)
    if words is not None:
        out.append((words, "\n".join(text)))
    return out

def section(ents, cmd):
    want = cmd.split()
    return "\n".join(t for w, t in ents if w[: len(want)] == want)

top = entries(run(["help"]).splitlines(), re.compile(r"^  ([a-z][a-z-]*(?: [a-z][a-z-]*)?)"))
scd = open(os.path.join(root, "docs", "ringkeep.1.scd")).read()
m = re.search(r"^# COMMANDS\n(.*?)^# ", scd, re.S | re.M)
if not m:
    sys.exit("help_test: docs/ringkeep.1.scd has no COMMANDS section")
man = entries(m.group(1).splitlines(), re.compile(r"^\*([a-z][a-z -]*)\*"))

missing = []
def need(where, text, what, pattern):
    if not re.search(pattern, text):
        missing.append(f"{where}: {what}")

for cmd in commands:
    if cmd in ("help",):
        continue
    own = run(cmd.split() + ["--help"])
    need("ringkeep help", section(top, cmd), f"command '{cmd}'", r"\S")
    need("man page", section(man, cmd), f"command '{cmd}'", r"\S")
    for sub in subcommands.get(cmd, []):
        need("ringkeep help", section(top, f"{cmd} {sub}"), f"'{cmd} {sub}'", r"\S")
        need("man page", section(man, f"{cmd} {sub}"), f"'{cmd} {sub}'", r"\S")
        need(f"ringkeep {cmd} --help", own, f"'{cmd} {sub}'", r"ringkeep %s %s\b" % (cmd, re.escape(sub)))
for cmd, opts in sorted(options.items()):
    own = run(cmd.split() + ["--help"])
    for o in sorted(opts):
        pat = r"--%s\b(?!-)" % re.escape(o)
        need("ringkeep help", section(top, cmd), f"'{cmd} --{o}'", pat)
        need(f"ringkeep {cmd} --help", own, f"'--{o}'", pat)
        need("man page", section(man, cmd), f"'{cmd} --{o}'", pat)

n_opts = sum(len(v) for v in options.values())
print(f"help_test: {len(commands)} commands, {sum(len(v) for v in subcommands.values())} subcommands, "
      f"{n_opts} options checked")
for line in missing:
    print("missing:", line)
sys.exit(1 if missing else 0)
EOF
