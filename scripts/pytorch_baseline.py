# Same-card baseline for `ddpm bench`: our own PyTorch re-implementation of the reference architecture in eager PyTorch (nn.MultiheadAttention batch_first, torch.optim.Adam),
# trained the way the reference's train loop does it (batch to device, t on CPU -> device, randn_like on device,
# loss.item() every step). Used by scripts/device-check.sh to time PyTorch on the same card as ddpm.
# Usage: python3 scripts/pytorch_baseline.py [cuda|cpu] [batch sizes, e.g. 64,256] [out.json]
# SDPA=1: attention through scaled_dot_product_attention (as ddpm); PROFILE=1: also a torch.profiler table of one
# training step at the first batch size and one sampling forward (CUDA kernel time by operator); GRAPH=1: also the
# same work replayed from CUDA graphs (no per-kernel host cost: the GPU-bound floor that ddpm could reach with graphs).
import json, os, sys, time, statistics, torch, torch.nn as nn
SDPA = os.environ.get("SDPA") == "1"

def time_emb(t, d):
    f = 10000 ** (torch.arange(0, d // 2, dtype=torch.float32, device=t.device) / (d // 2))
    a = t[:, None].float() / f
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)

def nac(i, o):
    return nn.Sequential(nn.GroupNorm(8, i), nn.SiLU(), nn.Conv2d(i, o, 3, padding=1))

class Layers(nn.Module):
    def __init__(s, ins, o, na, temb, heads):
        super().__init__()
        s.resnet_conv_first = nn.ModuleList([nac(i, o) for i in ins])
        s.t_emb_layers = nn.ModuleList([nn.Sequential(nn.SiLU(), nn.Linear(temb, o)) for _ in ins])
        s.resnet_conv_second = nn.ModuleList([nac(o, o) for _ in ins])
        s.attention_norms = nn.ModuleList([nn.GroupNorm(8, o) for _ in range(na)])
        s.attentions = nn.ModuleList([nn.MultiheadAttention(o, heads, batch_first=True) for _ in range(na)])
        s.residual_input_conv = nn.ModuleList([nn.Conv2d(i, o, 1) for i in ins])
    def res(s, i, x, te):
        h = s.resnet_conv_first[i](x) + s.t_emb_layers[i](te)[:, :, None, None]
        return s.resnet_conv_second[i](h) + s.residual_input_conv[i](x)
    def att(s, i, x):
        b, c, h, w = x.shape
        q = s.attention_norms[i](x.reshape(b, c, h * w)).transpose(1, 2)
        if SDPA:  # the same parameters through scaled_dot_product_attention, as ddpm computes it
            m = s.attentions[i]; nh = m.num_heads
            qkv = nn.functional.linear(q, m.in_proj_weight, m.in_proj_bias).view(b, h * w, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
            o = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, h * w, c)
            o = m.out_proj(o)
        else:
            o, _ = s.attentions[i](q, q, q)
        return x + o.transpose(1, 2).reshape(b, c, h, w)

class Down(Layers):
    def __init__(s, i, o, temb, ds, heads, n):
        super().__init__([i] + [o] * (n - 1), o, n, temb, heads); s.n = n
        s.down_sample_conv = nn.Conv2d(o, o, 4, 2, 1) if ds else nn.Identity()
    def forward(s, x, te):
        for i in range(s.n): x = s.att(i, s.res(i, x, te))
        return s.down_sample_conv(x)

class Mid(Layers):
    def __init__(s, i, o, temb, heads, n):
        super().__init__([i] + [o] * n, o, n, temb, heads); s.n = n
    def forward(s, x, te):
        x = s.res(0, x, te)
        for i in range(s.n): x = s.res(i + 1, s.att(i, x), te)
        return x

class Up(Layers):
    def __init__(s, i, o, temb, us, heads, n):
        super().__init__([i] + [o] * (n - 1), o, n, temb, heads); s.n = n
        s.up_sample_conv = nn.ConvTranspose2d(i // 2, i // 2, 4, 2, 1) if us else nn.Identity()
    def forward(s, x, skip, te):
        x = torch.cat([s.up_sample_conv(x), skip], dim=1)
        for i in range(s.n): x = s.att(i, s.res(i, x, te))
        return x

class Unet(nn.Module):
    # n: layers per down block; n_mid / n_up default to n; im_channels: image channels (the reference's model_params).
    def __init__(s, dc=(32, 64, 128, 256), mc=(256, 256, 128), ds=(True, True, False), temb=128, n=2, heads=4,
                 im_channels=1, n_mid=None, n_up=None):
        super().__init__()
        s.temb = temb
        s.t_proj = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb))
        s.conv_in = nn.Conv2d(im_channels, dc[0], 3, padding=1)
        s.downs = nn.ModuleList([Down(dc[i], dc[i + 1], temb, ds[i], heads, n) for i in range(len(dc) - 1)])
        s.mids = nn.ModuleList([Mid(mc[i], mc[i + 1], temb, heads, n if n_mid is None else n_mid) for i in range(len(mc) - 1)])
        s.ups = nn.ModuleList([Up(dc[i] * 2, dc[i - 1] if i != 0 else 16, temb, ds[i], heads, n if n_up is None else n_up)
                               for i in reversed(range(len(dc) - 1))])
        s.norm_out = nn.GroupNorm(8, 16)
        s.conv_out = nn.Conv2d(16, im_channels, 3, padding=1)
    def forward(s, x, t):
        te = s.t_proj(time_emb(t, s.temb).to(x.dtype))
        h = s.conv_in(x); skips = []
        for d in s.downs: skips.append(h); h = d(h, te)
        for m in s.mids: h = m(h, te)
        for u in s.ups: h = u(h, skips.pop(), te)
        return s.conv_out(nn.functional.silu(s.norm_out(h)))

def unet_from_config(mp):
    """The U-Net of a reference-schema `model_params` dict (the keys of the reference's config/default.yaml)."""
    return Unet(tuple(mp["down_channels"]), tuple(mp["mid_channels"]), tuple(mp["down_sample"]), mp["time_emb_dim"],
                mp["num_down_layers"], mp.get("num_heads", 4), mp["im_channels"], mp["num_mid_layers"], mp["num_up_layers"])

def main():
    dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "64,256").split(",")]
    reps, steps, warm = 5, 3, 2
    out = {"sdpa": SDPA, "device": dev, "torch": torch.__version__, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "gpu": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "train": [], "sample": None}
    sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (lambda: None)
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T); ab = torch.cumprod(1 - betas, 0)
    sa, s1a = ab.sqrt(), (1 - ab).sqrt()
    torch.manual_seed(0)
    model = Unet().to(dev)
    out["params"] = sum(p.numel() for p in model.parameters())
    for b in batches:
        torch.manual_seed(0)
        model = Unet().to(dev); model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        im_cpu = torch.rand(b, 1, 28, 28) * 2 - 1
        if dev == "cuda": torch.cuda.reset_peak_memory_stats()
        def step():
            opt.zero_grad()
            im = im_cpu.to(dev)
            noise = torch.randn_like(im)
            t = torch.randint(0, T, (b,)).to(dev)
            xt = sa.to(dev)[t][:, None, None, None] * im + s1a.to(dev)[t][:, None, None, None] * noise
            loss = nn.functional.mse_loss(model(xt, t), noise)
            loss.item()
            loss.backward(); opt.step()
        for _ in range(warm): step()
        sync(); rates = []
        for _ in range(reps):
            c = time.perf_counter()
            for _ in range(steps): step()
            sync(); rates.append(b * steps / (time.perf_counter() - c))
        mem = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
        out["train"].append({"batch": b, "median_img_s": statistics.median(rates), "img_s": rates, "peak_alloc_mib": mem})
        print(f"reference-style eager, batch {b}: {statistics.median(rates):.1f} img/s, peak allocated {mem} MiB", flush=True)
        del model, opt
    if os.environ.get("PROFILE") == "1" and dev == "cuda":
        from torch.profiler import profile, ProfilerActivity
        b = batches[0]
        torch.manual_seed(0); model = Unet().to(dev); opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        im = torch.rand(b, 1, 28, 28, device=dev) * 2 - 1
        def tstep():
            opt.zero_grad(); t = torch.randint(0, T, (b,), device=dev); n_ = torch.randn_like(im)
            nn.functional.mse_loss(model(im * 0.5 + n_ * 0.5, t), n_).backward(); opt.step()
        for _ in range(3): tstep()
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3): tstep()
            sync()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
        print(f"== profile: 3 training steps, batch {b}, sdpa {SDPA}\n" + table, flush=True)
        model.eval()
        with torch.no_grad():
            x = torch.randn(100, 1, 28, 28, device=dev); tt = torch.full((100,), 500, device=dev, dtype=torch.long)
            for _ in range(3): model(x, tt)
            sync()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(3): model(x, tt)
                sync()
        print(f"== profile: 3 forwards of 100 images, sdpa {SDPA}\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=30), flush=True)
        del model, opt
    model = Unet().to(dev).eval()
    alphas = (1 - betas).to(dev); abd = ab.to(dev); bd = betas.to(dev)
    abp = torch.cat([torch.ones(1), ab[:-1]]).to(dev)
    n = int(os.environ.get("SAMPLE_BATCH", "100"))
    with torch.no_grad():
        x = torch.randn(n, 1, 28, 28, device=dev)
        def sstep(i):
            nonlocal x
            eps = model(x, torch.full((n,), i, device=dev, dtype=torch.long))
            mean = (x - bd[i] / (1 - abd[i]).sqrt() * eps) / alphas[i].sqrt()
            var = (1 - abp[i]) / (1 - abd[i]) * bd[i]
            x = mean + var.sqrt() * torch.randn_like(x) if i > 0 else mean
        for i in range(T - 1, T - 1 - warm, -1): sstep(i)
        sync(); ms = []
        i = T - 1 - warm
        for _ in range(reps):
            c = time.perf_counter()
            for _ in range(steps): sstep(i); i -= 1
            sync(); ms.append((time.perf_counter() - c) * 1000 / steps)
        full = None
        if dev == "cuda":
            x = torch.randn(n, 1, 28, 28, device=dev); sync(); c = time.perf_counter()
            for i in range(T - 1, -1, -1): sstep(i)
            sync(); full = time.perf_counter() - c
    out["sample"] = {"images": n, "median_ms_step": statistics.median(ms), "ms_step": ms, "full_1000_s": full}
    print(f"reference-style eager, sample {n} images: {statistics.median(ms):.2f} ms/step, all 1000 steps {full} s", flush=True)
    if os.environ.get("GRAPH") == "1" and dev == "cuda":
        try:
            out["graphs"] = graph_floor(batches[0], n, T, sync)
        except Exception as e:  # a diagnosis only: report and keep the rest
            out["graphs"] = {"error": repr(e)}
        print(f"CUDA graphs: {out['graphs']}", flush=True)
    json.dump(out, open(sys.argv[3] if len(sys.argv) > 3 else "ref.json", "w"), indent=1)

def graph_floor(b, n, T, sync, reps=20):
    # Forward+backward of one training batch and one sampling forward, each captured once and replayed: the time per
    # replay is the GPU time of the kernels without the host issuing them one by one.
    dev = "cuda"
    torch.manual_seed(0)
    model = Unet().to(dev).train()
    x = torch.rand(b, 1, 28, 28, device=dev) * 2 - 1
    t = torch.randint(0, T, (b,), device=dev)
    graphed = torch.cuda.make_graphed_callables(model, (x, t), num_warmup_iters=3)
    def fwd_bwd():
        graphed(x, t).square().mean().backward()
    for _ in range(3): fwd_bwd()
    sync(); c = time.perf_counter()
    for _ in range(reps): fwd_bwd()
    sync(); train_ms = (time.perf_counter() - c) * 1000 / reps
    eager = Unet().to(dev).train(); eager.load_state_dict(model.state_dict())
    def eager_fwd_bwd():
        eager(x, t).square().mean().backward()
    for _ in range(3): eager_fwd_bwd()
    sync(); c = time.perf_counter()
    for _ in range(reps): eager_fwd_bwd()
    sync(); eager_ms = (time.perf_counter() - c) * 1000 / reps
    model.eval()
    xs = torch.randn(n, 1, 28, 28, device=dev); ts = torch.full((n,), 500, device=dev, dtype=torch.long)
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(s):
        for _ in range(3): model(xs, ts)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        ys = model(xs, ts)
    sync(); c = time.perf_counter()
    for _ in range(reps): g.replay()
    sync(); sample_ms = (time.perf_counter() - c) * 1000 / reps
    return {"batch": b, "train_fwd_bwd_graph_ms": train_ms, "train_fwd_bwd_eager_ms": eager_ms,
            "sample_images": n, "sample_forward_graph_ms": sample_ms}

if __name__ == "__main__":
    main()
