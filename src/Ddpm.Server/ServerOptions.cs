using System.Net;
using System.Net.Sockets;
using static TorchSharp.torch;

namespace Ddpm.Server;

/// <summary>What <c>ddpm serve</c> serves, where, and how much work one request may ask for.</summary>
public sealed record ServerOptions
{
    /// <summary>The folder of run folders (<c>runs/</c>); nothing outside it is ever read.</summary>
    public required string RunsDirectory { get; init; }
    /// <summary>The address to bind; loopback unless the user asks otherwise.</summary>
    public IPAddress Host { get; init; } = IPAddress.Loopback;
    /// <summary>The TCP port (0 = any free port, as tests use).</summary>
    public int Port { get; init; } = 8080;
    public Device Device { get; init; } = CPU;
    public GenerationLimits Limits { get; init; } = new();
    /// <summary>Least time between two streamed frames of the reverse process (a rate a browser can show).</summary>
    public TimeSpan FrameInterval { get; init; } = TimeSpan.FromMilliseconds(100);
    /// <summary>Frames held for a client that reads slower than the model samples; beyond it the oldest is dropped (a
    /// live view wants the newest).</summary>
    public int FrameQueue { get; init; } = 2;
    /// <summary>
    /// Most connections served at once; null: as many as the open-file limit leaves room for (docs/serve.md).
    /// </summary>
    public int? MaxConnections { get; init; }

    /// <summary>True when only this machine can connect.</summary>
    public bool IsLoopback => IPAddress.IsLoopback(Host);

    /// <summary>The page's address as a browser takes it (<c>localhost</c> for "every interface").</summary>
    public string Url => $"http://{(Host.Equals(IPAddress.Any) || Host.Equals(IPAddress.IPv6Any) ? "localhost"
        : Host.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{Host}]" : Host.ToString())}:{Port}/";

    /// <summary>The address a user names: <c>localhost</c> or an IP address.</summary>
    /// <exception cref="RequestException">Anything else.</exception>
    public static IPAddress ParseHost(string host) => host == "localhost" ? IPAddress.Loopback
        : IPAddress.TryParse(host, out var parsed) ? parsed
        : throw new RequestException($"--host: '{host}' is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)");

    /// <summary>Checks what a user gives: a runs folder that exists, a port in 1..65535, limits of at least
    /// 1.</summary>
    /// <exception cref="RequestException">The first problem, naming the option.</exception>
    public void Validate()
    {
        if (!Directory.Exists(RunsDirectory))
            throw new RequestException($"--runs: no folder '{RunsDirectory}' (train a model first: ddpm train --config FILE)");
        if (Port is < 1 or > 65535) throw new RequestException($"--port must lie in 1..65535, got {Port}");
        if (Limits.MaxImages < 1) throw new RequestException($"--max-images must be >= 1, got {Limits.MaxImages}");
        if (Limits.MaxImageSteps < 1) throw new RequestException($"--max-image-steps must be >= 1, got {Limits.MaxImageSteps}");
    }
}

/// <summary>Bounds on one generation request.</summary>
public sealed record GenerationLimits
{
    /// <summary>Most images in one request.</summary>
    public int MaxImages { get; init; } = 64;
    /// <summary>Most network evaluations in one request: images × steps (× 2 with guidance, which doubles the
    /// batch).</summary>
    public long MaxImageSteps { get; init; } = 64_000;
    /// <summary>Most classifier-free guidance weight accepted.</summary>
    public double MaxGuidance { get; init; } = 50;
    /// <summary>Loaded models kept in memory for the next request (one per checkpoint).</summary>
    public int CachedModels { get; init; } = 2;
}
