using System.CommandLine.Parsing;
using Ddpm.Cli.Commands;
using Ddpm.Distributed;
using Ddpm.Runtime;

namespace Ddpm.Cli;

/// <summary>
/// The <c>ddpm</c> command and its one error policy. Exit codes: 0 ok, 1 failure, 2 usage error (a bad option value,
/// whichever command it belongs to). Every failure is one line naming the thing and the problem (<c>error: …</c>); a
/// stack trace is printed only with <c>--verbose</c> or <c>DDPM_DEBUG=1</c>.
/// </summary>
public static class CliApp
{
    public const int Ok = 0, Failure = 1, Usage = 2;
    /// <summary>The open-file limit below which ddpm refuses to start (loaded assemblies hold descriptors).</summary>
    public const int MinimumDescriptors = 256;

    private static readonly Option<bool> Verbose = new("--verbose") { Description = "print the stack trace with an error (also DDPM_DEBUG=1)", Recursive = true };
    /// <summary>Numeric options that count (≥ 1), may be 0 (≥ 0) or must be positive, in whichever command.</summary>
    private static readonly HashSet<string> CountOptions = ["--batch-size", "--num", "--epochs", "--grid-rows", "--repeats", "--sample-batch",
        "--sync-every", "--resample", "--jump", "--max-images", "--max-image-steps", "--to-steps", "--steps-per-round"];
    private static readonly HashSet<string> NonNegativeOptions = ["--max-steps", "--save-every", "--frames", "--guidance", "--nll-images",
        "--nll-timesteps", "--warmup", "--warmup-steps"];
    private static readonly HashSet<string> PositiveOptions = ["--lr"];

    public static RootCommand Build()
    {
        var root = new RootCommand("ddpm: train and sample Denoising Diffusion Probabilistic Models (Ho et al. 2020) in .NET") { Verbose };
        foreach (var command in new[] { TrainCommand.Create(), GenerationCommands.Sample(), GenerationCommands.Inpaint(), GenerationCommands.Interpolate(),
                     ModelCommands.Info(), MnistCommands.Data(), BenchCommand.Create(), ModelCommands.Import(), ModelCommands.Export(),
                     MnistCommands.Classifier(), EvalCommand.Create(), ServeCommand.Create(), DistillCommand.Create() })
            root.Add(command);
        AddRangeChecks(root);
        return root;
    }

    public static int Run(string[] args)
    {
        ParentWatch.StartFromEnvironment(); // a child of a test host or job runner dies with it (DDPM_EXIT_WITH_PARENT)
        bool verbose = Environment.GetEnvironmentVariable("DDPM_DEBUG") == "1" || args.Contains("--verbose");
        MpiCommunicator? mpi = null;
        try
        {
            LibTorchLocation.UseFromEnvironment();
            var parse = Build().Parse(args);
            foreach (var e in parse.Errors) Console.Error.WriteLine($"error: {ErrorText.OneLine(e.Message)}");
            if (parse.Errors.Count > 0)
            {
                Console.Error.WriteLine("Run 'ddpm --help' (or 'ddpm COMMAND --help') for usage.");
                return Usage;
            }
            mpi = DistributedJob.Join(); // under mpirun only, before anything starts CUDA; a plain process loads no MPI
            DevicePolicy.Apply(TorchSharp.torch.CPU); // the host's one policy call (--device cuda adds the CUDA part)
            int code = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
            mpi?.Finish();
            return code;
        }
        catch (Exception e)
        {
            int code = Report(e, verbose, mpi is { Size: > 1 } ? $"rank {mpi.Rank}: " : "");
            mpi?.Abort(code); // the other ranks may wait for this one inside a collective: mpirun stops them
            return code;
        }
    }

    /// <summary>One line per failure (exit 1; 2 for a usage error), the stack trace only if verbose.</summary>
    public static int Report(Exception e, bool verbose = false, string prefix = "")
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } single) e = single.InnerException!;
        if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        var line = e is UsageException ? e.Message : ErrorText.Describe(e) ?? $"unexpected failure ({e.GetType().Name}): {e.Message}" +
            (verbose ? "" : " (run with --verbose or DDPM_DEBUG=1 for the stack trace, and please report it)");
        Console.Error.WriteLine($"{prefix}error: {ErrorText.OneLine(line)}");
        if (verbose) Console.Error.WriteLine(e.ToString());
        return e is UsageException or RequestException ? Usage : Failure;
    }

    /// <summary>One range rule for numeric options (finite, and ≥ their minimum); else a parse error, exit 2.</summary>
    private static void AddRangeChecks(Command command)
    {
        foreach (var option in command.Options)
        {
            string name = option.Name;
            double min = CountOptions.Contains(name) ? 1 : NonNegativeOptions.Contains(name) ? 0 : PositiveOptions.Contains(name) ? double.Epsilon : double.NaN;
            var type = Nullable.GetUnderlyingType(option.ValueType) ?? option.ValueType;
            if (type != typeof(int) && type != typeof(long) && type != typeof(double) && type != typeof(float)) continue;
            option.Validators.Add(result =>
            {
                var text = result.Tokens.Count == 0 ? null : result.Tokens[^1].Value;
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) return; // the parser reports it
                if (!double.IsFinite(v)) result.AddError($"{name} must be a finite number, got {text}");
                else if (!double.IsNaN(min) && v < min)
                    result.AddError(min == double.Epsilon ? $"{name} must be > 0, got {text}" : $"{name} must be >= {min}, got {text}");
            });
        }
        foreach (var sub in command.Subcommands) AddRangeChecks(sub);
    }
}

/// <summary>A bad command-line value (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);
