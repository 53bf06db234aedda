"""Merge the rows of utility tables made elsewhere (another folder, another machine) into a results table.

A row of SOURCE replaces the row of TABLE with the same kind (DPSD, DPSD Confident-GNMax, DP-SGD, PATE, teachers), mode and
target epsilon; the other rows of TABLE stay. Every row keeps the machine, command and date it was made with (bench/utility.py
stamps them), so a table merged from several runs still says where each row comes from. The table's own header is kept, its
`merged` field lists what was merged in. Written atomically.

    python bench/merge_results.py bench/results/utility-mnist.json /tmp/pate-st/utility-mnist.json /tmp/b10-base/utility-mnist.json
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility import ROW_OF, target_of  # noqa: E402  (the bench's own notion of a row's kind and target)


def key(r: dict) -> tuple: return ROW_OF(r['method']), r.get('mode', ''), float(target_of(r)) if ROW_OF(r['method']) != 'teachers' else r.get('teachers')


def merge(table: Path, sources: list) -> dict:
    report = json.loads(table.read_text())
    rows = list(report['rows'])
    for src in sources:
        other = json.loads(Path(src).read_text())
        for field in ('dataset', 'delta'):
            if other.get(field) != report.get(field): sys.exit(f"{src}: {field} {other.get(field)!r}, the table's is {report.get(field)!r}: not merged")
        for r in other['rows']:
            if ROW_OF(r['method']) == 'teachers': continue  # the teachers rows are the table's own
            r = {'machine': other['machine'], 'command': other['command'], **r}
            hit = [i for i, old in enumerate(rows) if key(old) == key(r)]
            if hit: rows[hit[0]] = r  # in the old row's place; any other row of the same key goes
            else: rows.append(r)
            rows = [old for i, old in enumerate(rows) if i not in hit[1:]]
        report.setdefault('merged', []).append(dict(source=str(src), command=other['command'], date=time.strftime('%Y-%m-%d')))
    report['rows'] = rows
    return report


if __name__ == '__main__':
    if len(sys.argv) < 3: sys.exit(__doc__)
    table = Path(sys.argv[1])
    report = merge(table, sys.argv[2:])
    tmp = table.with_name(f'.{table.name}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, table)
    for r in report['rows']: print(f"{r['method'][:50]:50} {r.get('mode', ''):6} {str(r.get('target', '')):5} {r['accuracy']:.4f}  {r.get('command', report['command'])[:80]}")
