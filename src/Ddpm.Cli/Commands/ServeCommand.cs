using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using Ddpm.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Hosting;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm serve</c>: the web page (generate with live frames, runs with live loss) for a runs folder.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var runs = new Option<string>("--runs") { Description = "folder of run folders to serve (nothing outside it is readable)", DefaultValueFactory = _ => "runs" };
        var host = new Option<string>("--host")
        {
            Description = "address to listen on; anything but loopback lets other machines use the page (and its CPU/GPU)",
            DefaultValueFactory = _ => "127.0.0.1",
        };
        var port = new Option<int>("--port") { Description = "TCP port", DefaultValueFactory = _ => 8080 };
        var device = CommonOptions.DeviceOption();
        var defaults = new GenerationLimits();
        var maxImages = new Option<int>("--max-images") { Description = "most images per request", DefaultValueFactory = _ => defaults.MaxImages };
        var maxImageSteps = new Option<long>("--max-image-steps")
        {
            Description = "most images × steps per request (× 2 with guidance)",
            DefaultValueFactory = _ => defaults.MaxImageSteps,
        };
        var cmd = new Command("serve", "Serve a web page to generate images (live reverse process) and follow training runs")
        {
            runs, host, port, device, maxImages, maxImageSteps,
        };
        cmd.SetAction(p => Run(p.GetValue(runs)!, p.GetValue(host)!, p.GetValue(port), p.GetValue(device), p.GetValue(maxImages), p.GetValue(maxImageSteps)));
        return cmd;
    }

    private static int Run(string runs, string host, int port, DeviceChoice device, int maxImages, long maxImageSteps)
    {
        if (!Directory.Exists(runs)) throw new UsageException($"--runs: no folder '{runs}' (train a model first: ddpm train --config FILE)");
        var address = host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(host, out var parsed) ? parsed : throw new UsageException($"--host: '{host}' is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)");
        if (port is < 1 or > 65535) throw new UsageException($"--port must lie in 1..65535, got {port}");
        if (maxImages < 1) throw new UsageException($"--max-images must be >= 1, got {maxImages}");
        if (maxImageSteps < 1) throw new UsageException($"--max-image-steps must be >= 1, got {maxImageSteps}");
        var options = new ServerOptions
        {
            RunsDirectory = runs, Host = address, Port = port, Device = CommonOptions.ResolveDevice(device),
            Limits = new GenerationLimits { MaxImages = maxImages, MaxImageSteps = maxImageSteps },
        };
        if (!options.IsLoopback)
            Console.Error.WriteLine($"warning: listening on {address}: anyone who can reach this machine can read the runs folder's logs and " +
                "samples and make it generate; there is no authentication");
        using var app = DdpmServer.Build(options);
        try
        {
            app.Start();
        }
        catch (IOException e) when (e.InnerException is SocketException || e.Message.Contains("address", StringComparison.OrdinalIgnoreCase))
        {
            throw new UsageException($"cannot listen on {address}:{port}: {e.Message}");
        }
        var shown = address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) ? "localhost" : address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        Console.WriteLine($"http://{shown}:{port}/");
        Console.Error.WriteLine($"serving {Path.GetFullPath(runs)} on {options.Device.type} (Ctrl-C stops)");
        app.WaitForShutdown();
        return CliApp.Ok;
    }
}
