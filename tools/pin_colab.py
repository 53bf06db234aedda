"""Pin every notebook's Colab install cell to the commit whose library these notebooks run with.

A notebook opened in Colab from GitHub installs the package with pip before anything else. Unpinned, it would install
whatever `main` holds that day, newer than the code its stored outputs were made with. This tool finds the last commit
that changed the package (`dpsd_nb/`, `settings.ini`, `setup.py`: what `pip install` builds) and writes it into each
notebook's install cell as `git+https://github.com/dpsd-nb/dpsd-nb@<commit>`. The pinned commit's package is then
exactly the working tree's, which `tests/test_colab_pin.py` checks on every CI run.

Run it after committing a change to the package, and commit the notebooks it touched (the pin cannot name the commit
that writes it). The pinned commit must reach GitHub as it is: the published history must not be rewritten (squashed or
rebased) after a pin, or every Colab install cell fails.

    python tools/pin_colab.py          # rewrite the pins
    python tools/pin_colab.py --check  # exit 1 and name the notebooks whose pin is missing or stale
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ('dpsd_nb', 'settings.ini', 'setup.py')  # what pip builds the package from
URL = 'git+https://github.com/dpsd-nb/dpsd-nb'
PIN = re.compile(re.escape(URL) + r"(@[0-9a-f]{40})?'")


def git(*args) -> str: return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def package_commit() -> str:
    "The last commit that changed the package; refuses when the working tree's package differs from it (commit first)."
    if git('status', '--porcelain', '--', *PACKAGE):
        sys.exit(f"uncommitted changes under {', '.join(PACKAGE)}: commit them first, then pin to that commit")
    return git('log', '-1', '--format=%H', '--', *PACKAGE)


def install_cells(nb: dict) -> list:
    "The code cells that pip-install the package from its repository."
    return [c for c in nb['cells'] if c['cell_type'] == 'code' and URL in ''.join(c['source'])]


def pins(path: Path) -> list:
    "The commits the notebook's install cells name ('' for an unpinned one)."
    return [(m.group(1) or '@')[1:] for c in install_cells(json.loads(path.read_text())) for m in PIN.finditer(''.join(c['source']))]


def pin(path: Path, commit: str) -> bool:
    "Rewrite the notebook's install cells to `commit`; True when the file changed."
    text = path.read_text()
    new = PIN.sub(f"{URL}@{commit}'", text)
    if new != text: path.write_text(new)
    return new != text


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--check', action='store_true', help='only check: exit 1 naming the notebooks whose pin is missing or stale')
    args = p.parse_args()
    commit = package_commit()
    notebooks = sorted((ROOT/'nbs').glob('*.ipynb'))
    if args.check:
        bad = [f"{nb.name}: {pins(nb) or 'no install cell'}" for nb in notebooks if pins(nb) and set(pins(nb)) != {commit}]
        if bad: sys.exit(f"pins other than the package's last commit {commit[:12]}:\n  " + '\n  '.join(bad) + "\nrun python tools/pin_colab.py")
        print(f"every install cell names {commit[:12]}")
        return
    changed = [nb.name for nb in notebooks if pin(nb, commit)]
    print(f"pinned to {commit[:12]}: {', '.join(changed) or 'nothing to change'}")


if __name__ == '__main__':
    main()
