"""The noise-free ceiling of DPSD on MNIST (issue 32, lever 1, first half): one teacher, epsilon = inf, a fixed answer budget.

Compares the package's `Distiller` as `bench/utility.py`'s epsilon = inf MNIST row configures it (the baseline) with a subclass
whose generator explores through the student only, and whose student trains on shifted copies of the answered queries:

  --boundary B   a share B of every generator batch (and of every query batch) is drawn with the conditional generator's class
                 embedding mixed 50/50 between its class y and another class y2; the generator is asked to make the student say
                 0.5 y + 0.5 y2 (soft target on two classes); the teacher answers those queries like any other (its label)
  --shift S      every student batch is translated by a random integer (dx, dy) in [-S, S]^2 per sample (background fill -1)
  --act A        DAFL's activation term: -A * mean |student features| on generated images
  --ie I         DAFL's information-entropy term: -I * H(mean student softmax over the generator batch)
  --diversity D  the mode-seeking term's weight (the package's `mode_seeking`; the baseline's 1.0)

Nothing of the teacher reaches the student or the generator except its answer (the label, through the package's
`TeacherOracle` and a sigma = 0 mechanism, `PrivacyConfig(epsilon=inf)`): every generator loss reads the student only.
Accuracy is measured on the VALIDATION half of MNIST's test split (`validation_split`, seed 0). The held-out half is read only
with --heldout, for a variant already chosen, from the students saved by earlier runs.

    python research/ceiling.py --name baseline --seed 0
    python research/ceiling.py --name boundary --boundary 0.5 --seed 0
    python research/ceiling.py --heldout /tmp/ceiling-students/<name>-seed*.pt
"""
import argparse
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dpsd_nb.data import load_dataset, validation_split
from dpsd_nb.models import accuracy, student_cnn
from dpsd_nb.teachers import TeacherConfig, get_teachers
from dpsd_nb.distill import DistillConfig, PrivacyConfig, Distiller, mode_seeking, soft_cross_entropy

INF_TEACHERS = TeacherConfig(teachers=1, epochs=6, batch_size=64, lr=3e-3, schedule='onecycle')  # bench/utility.py SETUPS['mnist']['inf_teachers']
INF_CFG = dict(query_noise=0.8, student_steps=8, final_steps=0, ema=0.995)  # bench/utility.py SETUPS['mnist']['inf_cfg']


@dataclass(frozen=True)
class Levers:
    boundary: float = 0.  # share of each generator and query batch asked for a 50/50 mix of two classes
    shift: int = 0  # student batches translated by up to this many pixels
    act: float = 0.  # DAFL activation weight
    ie: float = 0.  # DAFL information-entropy weight

    @property
    def off(self): return not (self.boundary or self.shift or self.act or self.ie)


def draw(G, z, y, y2=None, w=None):
    "Images of the package's conditional `Generator`: class embedding w * E[y] + (1 - w) * E[y2] (w = 1: exactly `G(z, y)`)."
    if y2 is None: return G(z, y)
    e = w[:, None] * G.embed(y) + (1 - w[:, None]) * G.embed(y2)
    h = z * e
    return G.body(G.fc(h).view(len(h), -1, *G.side))


def shifted(x, s, rng):
    "Each image translated by a random integer (dx, dy) in [-s, s]^2, the uncovered border filled with -1 (MNIST's background)."
    B, C, H, W = x.shape
    d = torch.randint(-s, s + 1, (2, B), generator=rng, device=x.device)
    pad = F.pad(x, (s, s, s, s), value=-1.)
    rows = (torch.arange(H, device=x.device)[None, :] + s + d[0][:, None])  # (B, H)
    cols = (torch.arange(W, device=x.device)[None, :] + s + d[1][:, None])  # (B, W)
    idx_r = rows[:, None, :, None].expand(B, C, H, W + 2 * s)
    out = pad.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(B, C, H, W)
    return out.gather(3, idx_c)


class Explorer(Distiller):
    "The package's loop with the levers above; the query, student and generator phases overridden, the rest (oracle, accountant, EMA) the package's."
    def __init__(self, *a, levers:Levers, **k):
        super().__init__(*a, **k)
        self.lv = levers

    def _pairs(self, n):
        "Second classes and mixing weights for a batch of n: the last round(boundary * n) rows are 50/50 mixes."
        C = self.info.num_classes
        y2 = torch.randint(1, C, (n,), generator=self.rng, device=self.device)
        w = torch.ones(n, device=self.device)
        nb = int(round(self.lv.boundary * n))
        if nb: w[n - nb:] = 0.5
        return y2, w, n - nb

    def _query(self):
        if self.step % self.cfg.query_every: return None
        n = min(self.cfg.query_batch, self.privacy.queries - self.queries)
        if n < 1 or self.accountant.epsilon_if(self.mechanism.events(n)) > self.privacy.epsilon * (1 + 1e-9): return None
        self.generator.eval(); self.student.eval()
        with torch.no_grad():
            y = self._classes(n)
            z = self._noise(n, self.cfg.latent)
            if self.lv.boundary:
                y2, w, _ = self._pairs(n)
                x = draw(self.generator, z, y, (y + y2) % self.info.num_classes, w)
            else: x = self.generator(z, y)
            x = (x + self.cfg.query_noise * self._noise(*x.shape)).clamp(-1, 1)
            probs = self.student(x).softmax(1)
        answer = self.oracle.answer(x, probs, self.mechanism, self.noise)  # the only door to the teacher: its (noise-free) label
        self.accountant.charge(answer.events)
        self.answer, a = answer, answer.answered
        if a.any():
            for key, v in (('x', x), ('soft', answer.soft), ('labels', answer.labels), ('noisy', answer.noisy),
                           ('candidates', answer.candidates)): self.buffer[key].append(v[a])
            self.last = (x[a], answer.soft[a])
        return answer

    def _train_student(self, x, soft):
        if self.lv.shift: x = shifted(x, self.lv.shift, self.rng)
        return super()._train_student(x, soft)

    def _generator_phase(self):
        self.generator.train(); self.student.eval().requires_grad_(False)
        C, B = self.info.num_classes, self.cfg.generator_batch
        y = self._classes(B)
        z = self._noise(B, self.cfg.latent)
        y2, w, pure = self._pairs(B)
        y2 = (y + y2) % C
        x = draw(self.generator, z, y, y2, w)
        feats = self.student[:-1](x)
        logits = self.student[-1](feats)
        target = w[:, None] * F.one_hot(y, C).float() + (1 - w[:, None]) * F.one_hot(y2, C).float()
        fit = soft_cross_entropy(logits, target)
        diverse = mode_seeking(x[:pure], z[:pure], y[:pure])
        loss = fit + self.cfg.diversity * diverse
        if self.lv.act: loss = loss - self.lv.act * feats.abs().mean()
        if self.lv.ie:
            p = logits.softmax(1).mean(0)
            loss = loss + self.lv.ie * (p * p.clamp_min(1e-8).log()).sum()  # -H(mean prediction): class balance
        self.opt_g.zero_grad(); loss.backward(); self.opt_g.step()
        self.student.requires_grad_(True)
        return fit.item(), diverse.item()


def released(d):
    "The student the run would release at this point: the weight average if any, else the student."
    return d.ema.module if d.ema is not None and d.ema.n_averaged > 0 else d.student


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--name', default='run')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--answers', type=int, default=25000, help='teacher answers (queries) bought; 100 per step, one step per 100')
    p.add_argument('--steps', type=int, default=None, help='loop iterations (default answers / 100)')
    p.add_argument('--boundary', type=float, default=0.)
    p.add_argument('--shift', type=int, default=0)
    p.add_argument('--act', type=float, default=0.)
    p.add_argument('--ie', type=float, default=0.)
    p.add_argument('--diversity', type=float, default=1.)
    p.add_argument('--ema', type=float, default=INF_CFG['ema'])
    p.add_argument('--every', type=int, default=50, help='validation accuracy printed every this many steps')
    p.add_argument('--root', default='/work/shared/data')
    p.add_argument('--cache', default='/tmp/ceiling-cache')
    p.add_argument('--save', default='/tmp/ceiling-students')
    p.add_argument('--heldout', nargs='+', default=None, help='saved students: print their HELD-OUT accuracy (for the chosen variant only)')
    args = p.parse_args()
    torch.set_num_threads(1)
    machine = (f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"on {torch.get_num_threads()} thread, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f} at start")
    print(f"machine: {machine}\ncommand: python {' '.join(sys.argv)}", flush=True)
    data = load_dataset('mnist', root=args.root)
    valid, held_out = validation_split(data.test)
    if args.heldout:
        for f in args.heldout:
            s = torch.load(f, map_location='cpu')
            m = student_cnn(data.info); m.load_state_dict(s['student'])
            print(f"{f}: HELD-OUT accuracy {accuracy(m, held_out):.4f} (validation {accuracy(m, valid):.4f}); {s['meta']}")
        return
    t0 = time.time()
    teachers, report = get_teachers(data, INF_TEACHERS, torch.device('cpu'), cache=args.cache, progress=False)
    print(f"teacher: {report} (loaded/trained in {time.time() - t0:.0f} s)", flush=True)
    steps = args.steps or -(-args.answers // 100)
    cfg = DistillConfig(steps=steps, seed=args.seed, **{**INF_CFG, 'ema': args.ema}, diversity=args.diversity)
    privacy = PrivacyConfig('label', epsilon=float('inf'), queries=args.answers)
    lv = Levers(args.boundary, args.shift, args.act, args.ie)
    print(f"config: {cfg}\nprivacy: {privacy}\nlevers: {lv} ({'the package Distiller itself' if lv.off else 'Explorer subclass'})", flush=True)
    t0 = time.time()
    d = Distiller(data.info, teachers, privacy, cfg, device='cpu') if lv.off else Explorer(data.info, teachers, privacy, cfg, device='cpu', levers=lv)
    d._cb('before_fit')
    while d.step < cfg.steps and not d.stop:
        d._iterate()
        if d.step % args.every == 0:
            print(f"  step {d.step}: answers {d.queries}, validation {accuracy(released(d), valid):.4f}, {time.time() - t0:.0f} s, losses "
                  + ', '.join(f'{k} {v:.3f}' for k, v in d.losses.items()), flush=True)
    d._finish()
    secs = time.time() - t0
    acc = accuracy(d.student, valid)
    meta = dict(name=args.name, seed=args.seed, valid=acc, answers=d.queries, seconds=secs, levers=asdict(lv), cfg=asdict(cfg))
    Path(args.save).mkdir(parents=True, exist_ok=True)
    torch.save({'student': d.student.state_dict(), 'meta': meta}, Path(args.save)/f"{args.name}-seed{args.seed}.pt")
    print(f"RESULT name={args.name} seed={args.seed} validation={acc:.4f} answers={d.queries} seconds={secs:.0f}", flush=True)


if __name__ == '__main__':
    main()
