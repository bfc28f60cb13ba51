using Ddpm.Server;
using Microsoft.Extensions.Hosting;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm serve</c>: the web page (generation with live frames, runs with live loss).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var limits = new GenerationLimits();
        var runs = Opt("--runs", "folder of run folders to serve (nothing outside it is readable)", "runs");
        var host = Opt("--host", "address to listen on; anything but loopback lets other machines use the page (and its CPU/GPU)", "127.0.0.1");
        var port = Opt("--port", "TCP port", 8080);
        var device = DeviceOption();
        var maxImages = Opt("--max-images", "most images per request", limits.MaxImages);
        var maxImageSteps = Opt("--max-image-steps", "most images × steps per request (× 2 with guidance)", limits.MaxImageSteps);
        return Cmd("serve", "Serve a web page to generate images (live reverse process) and follow training runs",
            [runs, host, port, device, maxImages, maxImageSteps], p =>
        {
            var options = new ServerOptions
            {
                RunsDirectory = p.GetValue(runs)!, Host = ServerOptions.ParseHost(p.GetValue(host)!), Port = p.GetValue(port),
                Limits = limits with { MaxImages = p.GetValue(maxImages), MaxImageSteps = p.GetValue(maxImageSteps) }, Device = ResolveDevice(p.GetValue(device)),
            };
            if (!options.IsLoopback)
                Console.Error.WriteLine($"warning: listening on {options.Host}: anyone who can reach this machine can read the runs " +
                    "folder's logs and samples and make it generate; there is no authentication");
            using var app = DdpmServer.Start(options);
            Console.WriteLine(options.Url);
            Console.Error.WriteLine($"serving {Path.GetFullPath(options.RunsDirectory)} on {options.Device.type} (Ctrl-C stops)");
            app.WaitForShutdown();
            return CliApp.Ok;
        });
    }
}
