using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Ddpm.Cli.Commands;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.Interop;
using Ddpm.Runtime;
using Ddpm.Training;

namespace Ddpm.Cli;

/// <summary>
/// The <c>ddpm</c> command and its one error policy. Exit codes: 0 ok, 1 failure, 2 usage error (a bad option value,
/// whichever command it belongs to). Every failure is one line naming the thing and the problem (<c>error: …</c>), file
/// system errors included (permissions, a file where a folder belongs, a path too long, a symbolic link loop); a stack
/// trace is printed only with <c>--verbose</c> or <c>DDPM_DEBUG=1</c>.
/// </summary>
public static class CliApp
{
    public const int Ok = 0, Failure = 1, Usage = 2;

    /// <summary>The open-file limit below which ddpm refuses to start (loaded assemblies hold descriptors).</summary>
    public const int MinimumDescriptors = 256;

    /// <summary>Print stack traces with errors (any command); also <c>DDPM_DEBUG=1</c>.</summary>
    private static readonly Option<bool> Verbose = new("--verbose")
    {
        Description = "print the stack trace with an error (also DDPM_DEBUG=1)",
        Recursive = true,
    };

    /// <summary>Options that count something and must be at least 1, whichever command declares them.</summary>
    private static readonly HashSet<string> CountOptions =
        ["--batch-size", "--num", "--epochs", "--grid-rows", "--repeats", "--sample-batch", "--sync-every", "--resample", "--jump"];
    /// <summary>Numeric options that must be at least 0.</summary>
    private static readonly HashSet<string> NonNegativeOptions = ["--max-steps", "--save-every", "--frames", "--guidance", "--nll-images", "--nll-timesteps", "--warmup"];
    /// <summary>Numeric options that must be greater than 0.</summary>
    private static readonly HashSet<string> PositiveOptions = ["--lr"];

    public static RootCommand Build()
    {
        var root = new RootCommand("ddpm: train and sample Denoising Diffusion Probabilistic Models (Ho et al. 2020) in .NET");
        root.Add(TrainCommand.Create());
        root.Add(SampleCommand.Create());
        root.Add(InpaintCommand.Create());
        root.Add(InterpolateCommand.Create());
        root.Add(InfoCommand.Create());
        root.Add(DataCommand.Create());
        root.Add(BenchCommand.Create());
        root.Add(ImportCommand.Create());
        root.Add(ExportCommand.Create());
        root.Add(ClassifierCommand.Create());
        root.Add(EvalCommand.Create());
        root.Add(ServeCommand.Create());
        root.Add(DistillCommand.Create());
        root.Add(Verbose);
        AddRangeChecks(root);
        return root;
    }

    public static int Run(string[] args)
    {
        Runtime.ParentWatch.StartFromEnvironment(); // a child of a test host or job runner dies with it (DDPM_EXIT_WITH_PARENT)
        bool verbose = Environment.GetEnvironmentVariable("DDPM_DEBUG") == "1" || args.Contains("--verbose");
        try
        {
            Runtime.LibTorchLocation.UseFromEnvironment();
        }
        catch (Exception e) when (e is IOException or DllNotFoundException or BadImageFormatException)
        {
            Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            return Failure;
        }
        ParseResult parse;
        try { parse = Build().Parse(args); }
        catch (Exception e) { return Report(e, verbose); }
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            Console.Error.WriteLine("Run 'ddpm --help' (or 'ddpm COMMAND --help') for usage.");
            return Usage;
        }
        // Under mpirun (only): join the MPI job before anything starts CUDA; a plain process loads no MPI.
        MpiCommunicator? mpi;
        try { mpi = DistributedJob.Join(); }
        catch (DistributedException e)
        {
            Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            return Failure;
        }
        int code;
        try
        {
            // The host's one policy call: libtorch's CPU set-up for every command (--device cuda adds the CUDA part).
            DevicePolicy.Apply(TorchSharp.torch.CPU);
            code = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            code = Report(e, verbose, mpi is { Size: > 1 } ? $"rank {mpi.Rank}: " : "");
            // The other ranks may be waiting for this one inside a collective: end the whole job (mpirun stops them).
            mpi?.Abort(code);
            return code;
        }
        mpi?.Finish();
        return code;
    }

    /// <summary>One clear line per failure (exit 1, or 2 for a usage error); the stack trace only when <paramref name="verbose"/>; <paramref name="prefix"/> names the MPI rank.</summary>
    public static int Report(Exception e, bool verbose = false, string prefix = "")
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } single) e = single.InnerException!;
        if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
        int code = e is UsageException or Runs.RunRequestException ? Usage : Failure;
        var line = e is UsageException ? e.Message : ErrorText.Describe(e) ?? $"unexpected failure ({e.GetType().Name}): {e.Message}" +
            (verbose ? "" : " (run with --verbose or DDPM_DEBUG=1 for the stack trace, and please report it)");
        Console.Error.WriteLine($"{prefix}error: {OneLine(line)}");
        if (verbose) Console.Error.WriteLine(e.ToString());
        return code;
    }

    /// <summary>A message as one line of reasonable length (<see cref="ErrorText.OneLine"/>).</summary>
    public static string OneLine(string message) => ErrorText.OneLine(message);

    /// <summary>
    /// One range rule for numeric options, whichever command declares them: counts ≥ 1, others ≥ 0 or &gt; 0, every number
    /// finite. A value out of range is a parse error (exit 2) like a value that is not a number.
    /// </summary>
    private static void AddRangeChecks(Command command)
    {
        foreach (var option in command.Options)
        {
            string name = option.Name;
            double min = CountOptions.Contains(name) ? 1 : NonNegativeOptions.Contains(name) ? 0 : PositiveOptions.Contains(name) ? double.Epsilon : double.NaN;
            if (option.ValueType is var t && (Nullable.GetUnderlyingType(t) ?? t) is var type
                && (type == typeof(int) || type == typeof(long) || type == typeof(double) || type == typeof(float)))
            {
                option.Validators.Add(result =>
                {
                    if (result.Tokens.Count == 0) return;
                    var text = result.Tokens[^1].Value;
                    if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) return; // the parser reports it
                    if (!double.IsFinite(v)) result.AddError($"{name} must be a finite number, got {text}");
                    else if (!double.IsNaN(min) && v < min)
                        result.AddError(min == double.Epsilon ? $"{name} must be > 0, got {text}" : $"{name} must be >= {min}, got {text}");
                });
            }
        }
        foreach (var sub in command.Subcommands) AddRangeChecks(sub);
    }
}

/// <summary>A bad command-line value (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);
