using Ddpm.Cli;
using Ddpm.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Ddpm.Tests.Server;

/// <summary>
/// A runs folder trained once per test process by the real CLI (<c>ddpm train</c>): <c>cond/</c>, a class-conditional
/// tiny U-Net on the synthetic bars (class 0 horizontal, class 1 vertical) with EMA, and <c>plain/</c>, an
/// unconditional one without EMA; the seed's linear schedule with T = 1000 so that a full-length generation takes long
/// enough to be watched, cancelled and refused. Beside the runs folder lies <c>outside/</c>, which no request may read
/// (links into it are planted in the runs folder).
/// </summary>
internal sealed class ServerRuns
{
    public const int ImageSize = 16, Timesteps = 1000, TrainSteps = 12;
    private static readonly Lazy<ServerRuns> Instance = new(() => new ServerRuns(), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The shared folder (trained on first use).</summary>
    public static ServerRuns Shared => Instance.Value;

    public string Root { get; }
    public string Runs => Path.Combine(Root, "runs");
    public string Outside => Path.Combine(Root, "outside");
    public string Cond => Path.Combine(Runs, "cond");
    public string Plain => Path.Combine(Runs, "plain");
    public string CondCheckpoint => Path.Combine(Cond, "checkpoint.ckpt");
    public string PlainCheckpoint => Path.Combine(Plain, "checkpoint.ckpt");

    private ServerRuns()
    {
        Root = TestPaths.TempDir("serve");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(Root, recursive: true); } catch (IOException) { } };
        Directory.CreateDirectory(Runs);
        var yaml = TinyCli.Yaml(imSize: ImageSize, numEpochs: 1, taskName: "serve")
            .Replace("num_timesteps: 20", $"num_timesteps: {Timesteps}").Replace("beta_end: 0.2", "beta_end: 0.02");
        var cond = yaml.Replace("  num_heads: 4", "  num_heads: 4\n  num_classes: 2").Replace("  lr: 0.001", "  lr: 0.001\n  label_dropout: 0.2\n  ema_decay: 0.9");
        Train(cond, "cond.yaml", Cond);
        Train(yaml, "plain.yaml", Plain);

        Directory.CreateDirectory(Outside);
        File.WriteAllBytes(Path.Combine(Outside, "secret.png"), File.ReadAllBytes(Path.Combine(Cond, "preview.png")));
        File.WriteAllText(Path.Combine(Outside, "secret.txt"), "outside the runs folder");
        File.CreateSymbolicLink(Path.Combine(Cond, "leak.png"), Path.Combine(Outside, "secret.png"));
        Directory.CreateSymbolicLink(Path.Combine(Runs, "escape"), Outside);
        File.CreateSymbolicLink(Path.Combine(Cond, "alias.png"), Path.Combine(Cond, "preview.png"));
        File.WriteAllText(Path.Combine(Cond, ".hidden.txt"), "hidden");
    }

    private void Train(string yaml, string name, string outDir)
    {
        var config = Path.Combine(Root, name);
        File.WriteAllText(config, yaml);
        int code = CliApp.Run(["train", "--config", config, "--out", outDir, "--max-steps", TrainSteps.ToString(), "--device", "cpu"]);
        if (code != 0) throw new InvalidOperationException($"ddpm train for {name} exited with {code}");
    }

    /// <summary>The server on this folder, in memory (<see cref="TestServer"/>), with quiet logs.</summary>
    public static WebApplication InMemory(ServerOptions options)
    {
        var app = DdpmServer.Build(options, b =>
        {
            b.WebHost.UseTestServer();
            b.Logging.ClearProviders();
        });
        app.StartAsync().GetAwaiter().GetResult();
        return app;
    }

    /// <summary>The server on this folder on Kestrel at 127.0.0.1 and a free port; returns the app and its base
    /// address.</summary>
    public static (WebApplication App, Uri Address) OnLoopback(ServerOptions options)
    {
        var app = DdpmServer.Build(options with { Port = 0 }, b => b.Logging.ClearProviders());
        app.StartAsync().GetAwaiter().GetResult();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return (app, new Uri(address.Replace("[::]", "127.0.0.1") + "/"));
    }
}
