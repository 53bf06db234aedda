"The teachers' forward calls, recorded: a test tool, not part of the package."
import torch

from dpsd_nb.distill import TeacherOracle
from dpsd_nb.models import as_teachers


class FlowGuard:
    "Records every forward call of the teachers' modules: grad mode, train mode, and whether the oracle made it (answering or checking)."
    def __init__(self, teachers): # a `TeacherCNN`, one module or a list (see `as_teachers`)
        self.calls, self._inside = [], False
        self._handles = [m.register_forward_pre_hook(self._record) for m in as_teachers(teachers).modules()]
        self._originals = {name: getattr(TeacherOracle, name) for name in ('answer', 'check')}
        for name, original in self._originals.items(): setattr(TeacherOracle, name, self._inside_oracle(original))
    def _inside_oracle(self, original):
        def method(oracle, *args, **kwargs):
            self._inside = True
            try: return original(oracle, *args, **kwargs)
            finally: self._inside = False
        return method
    def _record(self, module, args): self.calls.append((torch.is_grad_enabled(), module.training, self._inside))
    def close(self):
        for h in self._handles: h.remove()
        for name, original in self._originals.items(): setattr(TeacherOracle, name, original)
