// Measures the ONNX export against TorchSharp on this machine, in one run: the exported model's error per config
// family, CPU time per forward at batch 1 and 100, a 100-image 20-step generation with the default sampler, and
// (--browser) the web page's time for 16 digits in headless Chromium. Prints markdown tables; docs/onnx.md keeps the
// results. Usage: dotnet run -c Release --project benchmarks/OnnxBench -- --checkpoint CKPT [--repeats N] [--browser]
using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Interop.Onnx;
using Ddpm.Models;
using Ddpm.Onnx;
using Ddpm.Runtime;
using Ddpm.Sampling;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.StaticFiles;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Logging;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using static TorchSharp.torch;
using OrtRequest = Ddpm.Onnx.GenerationRequest;
using TorchRequest = Ddpm.Sampling.GenerationRequest;

string? checkpoint = null;
int repeats = 5;
bool browser = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--checkpoint": checkpoint = args[++i]; break;
        case "--repeats": repeats = int.Parse(args[++i]); break;
        case "--browser": browser = true; break;
        default: Console.Error.WriteLine($"error: unknown option {args[i]}"); return 2;
    }
}
if (checkpoint is null)
{
    Console.Error.WriteLine("usage: OnnxBench --checkpoint CKPT [--repeats N] [--browser]");
    return 2;
}
var work = Directory.CreateTempSubdirectory("ddpm-onnx-bench").FullName;
try
{
    Console.WriteLine($"machine: {Environment.ProcessorCount} cores; libtorch CPU convolutions: {DevicePolicy.CpuConvolutions}; " +
        $"host allocator: {DevicePolicy.HostAllocator}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
    Errors(work);
    using var torchGenerator = ImageGenerator.Load(checkpoint);
    var config = torchGenerator.Source!.Config;
    var onnxPath = Path.Combine(work, "model.onnx");
    OnnxExport.Write(torchGenerator.Model, config, onnxPath, Path.GetFileName(checkpoint) + (torchGenerator.UsesEma ? " (EMA)" : ""));
    Forward(torchGenerator.Model, onnxPath, repeats);
    Generation(torchGenerator, onnxPath);
    if (browser) Browser(torchGenerator.Model, config, work);
    return 0;
}
finally
{
    Directory.Delete(work, recursive: true);
}

// The exported model's output against TorchSharp's on random inputs, for each config family with random weights.
static void Errors(string work)
{
    Console.WriteLine("\n| family | parameters | ONNX nodes | max \\|ORT − TorchSharp\\| / max \\|TorchSharp\\| |\n|---|---:|---:|---:|");
    var tiny = new UNetOptions
    {
        ImSize = 16, DownChannels = [8, 16, 16, 16], MidChannels = [16, 16, 16], TimeEmbDim = 16,
        NumDownLayers = 1, NumMidLayers = 1, NumUpLayers = 1,
    };
    var families = new (string Name, DdpmConfig Config)[]
    {
        ("seed (default.yaml)", new DdpmConfig()),
        ("quick (configs/quick.yaml)", DdpmConfig.Load(Path.Combine(RepoRoot(), "configs", "quick.yaml"))),
        ("deeper (3/2/3 layers)", new DdpmConfig { Model = tiny with { NumDownLayers = 3, NumMidLayers = 2, NumUpLayers = 3 } }),
        ("no attention levels", new DdpmConfig { Model = tiny with { AttentionLevels = [false, false, false] } }),
        ("RGB 12×12, x0, cosine", new DdpmConfig { Model = tiny with { ImChannels = 3, ImSize = 12, DownSample = [true, false, false], NumHeads = 2 },
            Diffusion = new DiffusionOptions { Schedule = ScheduleKind.Cosine, Prediction = PredictionTarget.X0 } }),
        ("class-conditional, v", new DdpmConfig { Model = tiny with { NumClasses = 3, AttentionLevels = [true, false, true] },
            Diffusion = new DiffusionOptions { Prediction = PredictionTarget.V } }),
    };
    foreach (var (name, config) in families)
    {
        using var model = new UNet(config.Model);
        using var generator = new Generator(1);
        using (no_grad())
            foreach (var p in model.parameters())
                using (var noise = randn(p.shape, generator: generator))
                    p.add_(noise * 0.1);
        model.eval();
        var path = Path.Combine(work, "family.onnx");
        var result = OnnxExport.Write(model, config, path);
        var m = config.Model;
        const int batch = 8;
        using var x = randn([batch, m.ImChannels, m.ImSize, m.ImSize], generator: generator);
        var ts = Enumerable.Range(0, batch).Select(i => (long)(i * 999 / (batch - 1))).ToArray();
        var ys = m.NumClasses > 0 ? Enumerable.Range(0, batch).Select(i => (long)(i % (m.NumClasses + 1))).ToArray() : [];
        float[] expected;
        using (no_grad())
        using (var t = tensor(ts))
        using (var y = ys.Length > 0 ? tensor(ys) : null)
        using (var output = model.forward(x, t, y))
            expected = output.data<float>().ToArray();
        using var denoiser = OnnxDenoiser.Load(path);
        var actual = new float[expected.Length];
        denoiser.Forward(x.data<float>().ToArray(), ts, ys, actual);
        double maxDiff = 0, maxRef = 0;
        for (int k = 0; k < actual.Length; k++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[k] - expected[k]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[k]));
        }
        Console.WriteLine($"| {name} | {result.Parameters:N0} | {result.Nodes} | {maxDiff / maxRef:E1} |");
    }
}

// Milliseconds per forward pass at batch 1 and 100, with 1 thread and with every core, libtorch vs ONNX Runtime.
static void Forward(UNet model, string onnxPath, int repeats)
{
    Console.WriteLine($"\n| threads | batch | libtorch ms/forward | ORT ms/forward | ORT speed-up |\n|---:|---:|---:|---:|---:|");
    var m = model.Options;
    foreach (int threads in new[] { 1, Environment.ProcessorCount }.Distinct())
    {
        set_num_threads(threads);
        using var denoiser = OnnxDenoiser.Load(onnxPath, new OnnxSessionSettings { IntraOpThreads = threads });
        foreach (int batch in new[] { 1, 100 })
        {
            using var x = randn([batch, m.ImChannels, m.ImSize, m.ImSize]);
            using var t = full(batch, 100L);
            using var y = m.NumClasses > 0 ? full(batch, (long)m.NumClasses) : null;
            double torchMs = Median(repeats, () =>
            {
                using var _ = no_grad();
                using var output = model.forward(x, t, y);
            });
            var xs = x.data<float>().ToArray();
            var ts = t.data<long>().ToArray();
            var ys = y?.data<long>().ToArray() ?? [];
            var output = new float[xs.Length];
            double ortMs = Median(repeats, () => denoiser.Forward(xs, ts, ys, output));
            Console.WriteLine($"| {threads} | {batch} | {torchMs:F1} | {ortMs:F1} | {torchMs / ortMs:F2}× |");
        }
    }
}

// 100 images, 20 steps of the default sampler (DPM-Solver++(2M) SDE): TorchSharp's ImageGenerator vs Ddpm.Onnx's.
static void Generation(ImageGenerator torch, string onnxPath)
{
    Console.WriteLine("\n| threads | 100 images × 20 steps (DPM-Solver++(2M) SDE) | libtorch s | ORT s | ORT speed-up |\n|---:|---|---:|---:|---:|");
    foreach (int threads in new[] { 1, Environment.ProcessorCount }.Distinct())
    {
        set_num_threads(threads);
        using var ort = OnnxImageGenerator.Load(onnxPath, new OnnxSessionSettings { IntraOpThreads = threads });
        var torchRequest = new TorchRequest { Count = 100, Seed = 0, Sampler = new SamplerOptions { Kind = SamplerOptions.RecommendedKind } };
        var ortRequest = new OrtRequest { Count = 100, Seed = 0 };
        torch.Generate(torchRequest with { Count = 4 }).Dispose(); // warm-up
        ort.Generate(ortRequest with { Count = 4 });
        var clock = Stopwatch.StartNew();
        torch.Generate(torchRequest).Dispose();
        double torchS = clock.Elapsed.TotalSeconds;
        clock.Restart();
        ort.Generate(ortRequest);
        double ortS = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"| {threads} | unconditional | {torchS:F2} | {ortS:F2} | {torchS / ortS:F2}× |");
    }
}

// The page of a web export, from a static server on loopback, in Debian's headless Chromium: 16 digits, default
// sampler.
static void Browser(UNet model, DdpmConfig config, string work)
{
    var folder = Path.Combine(work, "web");
    OnnxWebExport.Write(model, config, folder);
    var builder = WebApplication.CreateSlimBuilder();
    builder.WebHost.UseUrls("http://127.0.0.1:0");
    builder.Logging.ClearProviders();
    var app = builder.Build();
    var files = new PhysicalFileProvider(folder);
    var types = new FileExtensionContentTypeProvider();
    types.Mappings[".mjs"] = "text/javascript";
    types.Mappings[".wasm"] = "application/wasm";
    types.Mappings[".onnx"] = "application/octet-stream";
    app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
    app.UseStaticFiles(new StaticFileOptions { FileProvider = files, ContentTypeProvider = types });
    app.StartAsync().GetAwaiter().GetResult();
    var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
    service.SuppressInitialDiagnosticInformation = true;
    var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
    options.AddArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", $"--user-data-dir={Path.Combine(work, "profile")}");
    using var driver = new ChromeDriver(service, options, TimeSpan.FromMinutes(2));
    driver.Manage().Timeouts().AsynchronousJavaScript = TimeSpan.FromMinutes(5);
    driver.Navigate().GoToUrl(address + "/");
    new WebDriverWait(driver, TimeSpan.FromMinutes(2)).Until(d => d.FindElement(By.TagName("body")).GetAttribute("data-ready") is "true" or "error");
    Console.WriteLine("\n| browser run | 16 digits × 20 steps (DPM-Solver++(2M) SDE), s | with frames drawn |\n|---:|---:|---|");
    for (int run = 1; run <= 3; run++)
    {
        var seconds = ((IJavaScriptExecutor)driver).ExecuteAsyncScript(
            "const done = arguments[arguments.length - 1]; window.ddpm.run({count: 16, seed: " + run + "}).then(r => done(r.seconds), e => done(-1));");
        Console.WriteLine($"| {run} | {Convert.ToDouble(seconds):F2} | x_t and x̂_0 after every step |");
    }
    Console.WriteLine($"({driver.Capabilities.GetCapability("browserName")} {driver.Capabilities.GetCapability("browserVersion")}, headless, one wasm thread)");
    app.StopAsync().GetAwaiter().GetResult();
}

static double Median(int repeats, Action action)
{
    action(); // warm-up
    var times = new double[repeats];
    for (int i = 0; i < repeats; i++)
    {
        var clock = Stopwatch.StartNew();
        action();
        times[i] = clock.Elapsed.TotalMilliseconds;
    }
    Array.Sort(times);
    return times[repeats / 2];
}

static string RepoRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ddpm.slnx"))) dir = dir.Parent;
    return dir?.FullName ?? throw new InvalidOperationException("run from inside the repository");
}
