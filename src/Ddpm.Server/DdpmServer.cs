using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Runs;
using Ddpm.Sampling;
using Ddpm.IO;
using Ddpm.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.HostFiltering;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using BadHttpRequestException = Microsoft.AspNetCore.Http.BadHttpRequestException;

namespace Ddpm.Server;

/// <summary>
/// The web app of <c>ddpm serve</c>: the page (embedded), the runs API, file reads confined to the runs folder, and
/// generation streamed as Server-Sent Events.
/// </summary>
public static partial class DdpmServer
{
    /// <summary>Extensions of run files the page may read (sample grids, logs, configs, evaluation results).</summary>
    private static readonly Dictionary<string, string> FileTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        [".png"] = "image/png", [".csv"] = "text/csv; charset=utf-8", [".yaml"] = "text/plain; charset=utf-8",
        [".yml"] = "text/plain; charset=utf-8", [".json"] = "application/json; charset=utf-8", [".txt"] = "text/plain; charset=utf-8",
    };

    /// <summary>
    /// Checks <paramref name="options"/>, builds the app and starts listening (<c>ddpm serve</c>); the caller waits for
    /// shutdown and disposes it.
    /// </summary>
    /// <exception cref="RequestException">An option that does not fit, or an address that cannot be listened
    /// on.</exception>
    public static WebApplication Start(ServerOptions options)
    {
        options.Validate();
        var app = Build(options);
        try
        {
            app.Start();
            return app;
        }
        catch (IOException e) when (e.InnerException is SocketException || e.Message.Contains("address", StringComparison.OrdinalIgnoreCase))
        {
            ((IDisposable)app).Dispose();
            throw new RequestException($"cannot listen on {options.Host}:{options.Port}: {e.Message}");
        }
    }

    /// <summary>
    /// Builds the app on Kestrel at <see cref="ServerOptions.Host"/>:<see cref="ServerOptions.Port"/>.
    /// <paramref name="configure"/> may adjust the builder (tests swap in the in-memory TestServer or silence logging).
    /// </summary>
    public static WebApplication Build(ServerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        var folder = new RunsFolder(options.RunsDirectory);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.ConfigureKestrel(k => k.Listen(options.Host, options.Port));
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        // One warning per connection refused beyond the cap would let a flood fill the log (GuardedServer).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Connections", LogLevel.Error);
        // A failed start is thrown to the host, which reports it; the host's own log of it would add a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.Critical);
        // A page bound to loopback answers only requests addressed to loopback names (no DNS rebinding from a web
        // page).
        builder.Services.Configure<HostFilteringOptions>(o =>
            o.AllowedHosts = options.IsLoopback ? ["localhost", "127.0.0.1", "[::1]"] : ["*"]);
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(folder);
        builder.Services.AddSingleton(sp => new RunsCatalog(folder) { Warn = m => sp.GetRequiredService<ILogger<RunsCatalog>>().LogWarning("{Message}", m) });
        builder.Services.AddSingleton(sp => new GenerationService(options.Device, options.Limits, options.FrameInterval,
            sp.GetRequiredService<ILogger<GenerationService>>()));
        configure?.Invoke(builder);
        GuardKestrel(builder.Services, options);

        var app = builder.Build();
        app.UseHostFiltering();
        app.Use(async (context, next) =>
        {
            try { await next(context); }
            catch (Exception e) when (IsClientCaused(e, context))
            {
                // A client that sends too slowly or too much, or leaves: its problem, one debug line, no stack trace.
                context.RequestServices.GetRequiredService<ILogger<RunsCatalog>>().LogDebug("{Method} {Path}: {Message}",
                    context.Request.Method, context.Request.Path, ErrorText.OneLine(e.Message));
                if (!context.Response.HasStarted && e is BadHttpRequestException bad) context.Response.StatusCode = bad.StatusCode;
            }
        });
        app.Use(async (context, next) =>
        {
            var headers = context.Response.Headers;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers.ContentSecurityPolicy = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
            headers["Referrer-Policy"] = "no-referrer";
            await next(context);
        });
        var assets = new EmbeddedFileProvider(typeof(DdpmServer).Assembly, "Ddpm.Server.wwwroot");
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = assets });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = assets });

        app.MapGet("/api/options", (ServerOptions o) => Results.Json(new
        {
            Samplers = EnumNames.Names<SamplerKind>(),
            Spacings = EnumNames.Names<SpacingKind>(),
            Sigmas = EnumNames.Names<VarianceKind>(),
            o.Limits.MaxImages,
            o.Limits.MaxImageSteps,
            o.Limits.MaxGuidance,
        }));
        app.MapGet("/api/runs", (RunsCatalog catalog) => Results.Json(catalog.Scan()));
        app.MapGet("/api/runs/{id}", (string id, RunsCatalog catalog) =>
            catalog.FindRun(id) is { } run ? Results.Json(RunDetails(run, catalog.Folder)) : NotFound($"no run has the id '{id}'"));
        app.MapGet("/api/runs/{id}/loss", (string id, long? offset, RunsCatalog catalog) =>
        {
            if (catalog.FindRun(id) is not { } run) return NotFound($"no run has the id '{id}'");
            var path = catalog.Folder.Contain(Path.Combine(run.FullPath, RunFolder.StepLogFile));
            return Readable(path, p => RunFiles.ReadLoss(p, offset ?? 0)) is { } chunk ? Results.Json(chunk) : Results.Json(new LossChunk(0, false, [], []));
        });
        app.MapGet("/files/{**path}", (string path, RunsFolder runs) =>
        {
            // Only regular files of known types inside the runs folder; '..', hidden names, links that lead out, FIFOs
            // and devices are 404. A hard link is the file itself: see docs/serve.md.
            var real = runs.Resolve(path);
            if (real is null || !FileTypes.TryGetValue(Path.GetExtension(real), out var type) || Readable<FileStream>(real, p => RegularFile.OpenRead(p)) is not { } file)
                return Results.NotFound();
            return Results.Stream(file, type, lastModified: File.GetLastWriteTimeUtc(real), enableRangeProcessing: true);
        });
        app.MapPost("/api/generate", Generate);
        return app;
    }

    private static object RunDetails(RunInfo run, RunsFolder folder)
    {
        string? File(string name) => folder.Contain(Path.Combine(run.FullPath, name)) is { } p && RegularFile.Is(p) ? p : null;
        var evaluation = Directory.EnumerateFiles(run.FullPath, RunFolder.EvaluationFile, new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 2 })
            .Select(folder.Contain).OfType<string>().Where(RegularFile.Is)
            .OrderByDescending(System.IO.File.GetLastWriteTimeUtc).FirstOrDefault();
        return new
        {
            Run = run,
            Config = Readable(File(RunFolder.ConfigFile), RunFiles.ReadText) ?? run.Checkpoints.FirstOrDefault()?.Config.ToYaml(),
            Epochs = Readable(File(RunFolder.EpochLogFile), RunFiles.ReadTable),
            HasLoss = File(RunFolder.StepLogFile) is not null,
            Evaluation = Readable(evaluation, RunFiles.ReadJson),
            TensorBoard = new RunFolder(run.FullPath).TensorBoardFiles().Any(),
        };
    }

    /// <summary>
    /// What <paramref name="read"/> makes of the file; null when there is none or it cannot be read (gone, a FIFO).
    /// </summary>
    private static T? Readable<T>(string? path, Func<string, T?> read) where T : class
    {
        if (path is null) return null;
        try { return read(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// Failures a client causes (a body sent too slowly or too large, a connection closed), not the server's.
    /// </summary>
    private static bool IsClientCaused(Exception e, HttpContext context) =>
        e is BadHttpRequestException || context.RequestAborted.IsCancellationRequested && e is OperationCanceledException or IOException;

    /// <summary>
    /// Puts <see cref="GuardedServer"/> in front of Kestrel (an in-memory test server is left as it is).
    /// </summary>
    private static void GuardKestrel(IServiceCollection services, ServerOptions options)
    {
        var registered = services.LastOrDefault(d => d.ServiceType == typeof(IServer));
        if (registered?.ImplementationType is not { } kestrel || kestrel.Assembly != typeof(KestrelServerOptions).Assembly) return;
        services.Remove(registered);
        services.AddSingleton(kestrel);
        services.AddSingleton<IServer>(sp => new GuardedServer((IServer)sp.GetRequiredService(kestrel),
            sp.GetRequiredService<IOptions<KestrelServerOptions>>().Value, options.MaxConnections, sp.GetRequiredService<ILogger<GuardedServer>>()));
    }

    /// <summary>
    /// <c>POST /api/generate</c>: 400 for a bad request, 429 (Retry-After) while the checkpoint is busy, else an
    /// event stream: <c>start</c>, <c>frame</c>s, then <c>done</c> (the grid as base64 PNG) or <c>error</c>.
    /// Closing the connection cancels the sampling within one step.
    /// </summary>
    private static async Task Generate(HttpContext context, RunsCatalog catalog, GenerationService service, ServerOptions options)
    {
        ServeRequest request;
        try
        {
            if (!context.Request.HasJsonContentType()) throw new BadRequestException("send the request as JSON (Content-Type: application/json)");
            request = ServeRequestParser.Parse(await ReadBody(context.Request), catalog, options.Limits);
        }
        catch (BadRequestException e)
        {
            await Results.Problem(e.Message, statusCode: StatusCodes.Status400BadRequest, title: "Bad request").ExecuteAsync(context);
            return;
        }
        using var lease = service.TryBegin(request.Checkpoint, out var retryAfter);
        if (lease is null)
        {
            context.Response.Headers.RetryAfter = ((int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Results.Problem($"checkpoint {request.Checkpoint.RunName}/{request.Checkpoint.Name} is generating for another request; retry in {retryAfter.TotalSeconds:F0} s",
                statusCode: StatusCodes.Status429TooManyRequests, title: "Busy").ExecuteAsync(context);
            return;
        }

        // The library checks the request against the model (an edit's images, mask, strength, resampling) before the
        // stream starts.
        GenerationPlan plan;
        try { plan = service.Plan(lease, request); }
        catch (ArgumentException e)
        {
            var bad = Results.Problem(e.Message, statusCode: StatusCodes.Status400BadRequest, title: "Bad request");
            await bad.ExecuteAsync(context);
            return;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The checkpoint could not be loaded (changed or damaged since the scan): a 500 with one line, no paths.
            var failed = Results.Problem(Failed(context, e, request.Checkpoint), statusCode: StatusCodes.Status500InternalServerError,
                title: "Generation failed");
            await failed.ExecuteAsync(context);
            return;
        }

        var cancel = context.RequestAborted;
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-store";
        await Send(context, "start", new
        {
            Steps = plan.Timesteps.Count, request.Count, request.Rows, request.Seed, Checkpoint = request.Checkpoint.Id,
            Size = request.Checkpoint.Model.ImageSize, Mode = request.Edit?.Mode ?? "sample",
        });
        // Frames go through a small channel that drops the oldest when the client reads slower than the model samples.
        var frames = Channel.CreateBounded<GenerationFrame>(new BoundedChannelOptions(Math.Max(1, options.FrameQueue)) { FullMode = BoundedChannelFullMode.DropOldest });
        var work = Task.Factory.StartNew(() =>
        {
            try { return service.Run(lease, request, f => frames.Writer.TryWrite(f), cancel); }
            finally { frames.Writer.TryComplete(); }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            await foreach (var f in frames.Reader.ReadAllAsync(cancel))
                await Send(context, "frame", new { f.Step, f.Steps, f.Timestep, Xt = Png(f.XtPng), X0 = Png(f.X0Png) });
            var result = await work;
            await Send(context, "done", new { result.Steps, result.Seconds, Png = Png(result.GridPng) });
        }
        catch (Exception) when (cancel.IsCancellationRequested)
        {
            // The client left (the page was closed or the request cancelled); the sampling stops at its next step.
        }
        catch (Exception e)
        {
            await Send(context, "error", new { Message = Failed(context, e, request.Checkpoint) });
        }
        finally
        {
            // The lease is released only after the sampling thread has stopped.
            try { await work; } catch (Exception) { /* reported above, or the client left */ }
        }
    }

    /// <summary>
    /// A message as a client may see it: one line without server paths (the checkpoint named as run/file, anything else
    /// absolute replaced by &lt;path&gt;), as the page promises.
    /// </summary>
    /// <summary>
    /// Logs a failed generation and returns what the client is told. A file that cannot be read or does not fit
    /// (corrupt, replaced, too large) is the runs folder's condition, logged as one warning line; anything else is a
    /// fault of the server, logged with its stack trace. The client's line names the checkpoint by run and no other
    /// path.
    /// </summary>
    private static string Failed(HttpContext context, Exception e, CheckpointInfo checkpoint)
    {
        var logger = context.RequestServices.GetRequiredService<ILogger<GenerationService>>();
        if (ErrorText.Describe(e) is { } line) logger.LogWarning("generation from {Run}/{Checkpoint} failed: {Message}", checkpoint.RunName, checkpoint.Name, line);
        else logger.LogError(e, "generation failed");
        var text = ForClient(e.Message, context.RequestServices.GetRequiredService<RunsCatalog>().Folder, checkpoint);
        return "generation failed: " + (text.Length > 300 ? text[..300] + "…" : text);
    }

    internal static string ForClient(string message, RunsFolder folder, CheckpointInfo checkpoint)
    {
        var line = ErrorText.OneLine(message).Replace(checkpoint.FullPath, $"{checkpoint.RunName}/{checkpoint.Name}", StringComparison.Ordinal)
            .Replace(folder.Root + "/", "", StringComparison.Ordinal);
        return AbsolutePath().Replace(line, "<path>");
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"(?<![\w.:~/-])/[^\s'""`,;()]+")]
    private static partial System.Text.RegularExpressions.Regex AbsolutePath();

    private static async Task<byte[]> ReadBody(HttpRequest request)
    {
        if (request.ContentLength > ServeRequestParser.MaxBodyBytes)
            throw new BadRequestException($"the body is larger than {ServeRequestParser.MaxBodyBytes} bytes");
        using var buffer = new MemoryStream();
        var chunk = new byte[4096];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (buffer.Length + read > ServeRequestParser.MaxBodyBytes)
                throw new BadRequestException($"the body is larger than {ServeRequestParser.MaxBodyBytes} bytes");
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private static async Task Send(HttpContext context, string name, object data)
    {
        var json = JsonSerializer.Serialize(data, JsonOptions);
        await context.Response.WriteAsync($"event: {name}\ndata: {json}\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);

    private static string Png(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    private static IResult NotFound(string detail) => Results.Problem(detail, statusCode: StatusCodes.Status404NotFound, title: "Not found");
}
