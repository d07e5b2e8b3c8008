import torch
torch.manual_seed(0)
w = torch.randint(-127, 128, (256, 256), dtype=torch.int8)
s = torch.rand(256, 1) * 0.01
def f(w, s): return (w.to(torch.float32) * s).to(torch.bfloat16)
def g(w, s): return w.to(torch.bfloat16) * s.to(torch.bfloat16)
def h(w, s): return torch.addcmul(torch.zeros((), dtype=torch.float32), w.to(torch.float32), s).to(torch.bfloat16)
import torch._inductor.cpu_vec_isa as isa
print(torch.backends.cpu.get_cpu_capability(), isa.pick_vec_isa())
for fn in (f, g, h):
    e = fn(w, s); c = torch.compile(fn)(w, s)
    print(fn.__name__, (e.float() - c.float()).abs().max().item())
