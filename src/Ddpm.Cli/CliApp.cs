using System.CommandLine;
using Ddpm.Cli.Commands;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.Interop;
using Ddpm.Training;

namespace Ddpm.Cli;

/// <summary>The <c>ddpm</c> command. Exit codes: 0 ok, 1 failure, 2 usage error.</summary>
public static class CliApp
{
    public const int Ok = 0, Failure = 1, Usage = 2;

    public static RootCommand Build()
    {
        var root = new RootCommand("ddpm: train and sample Denoising Diffusion Probabilistic Models (Ho et al. 2020) in .NET");
        root.Add(TrainCommand.Create());
        root.Add(SampleCommand.Create());
        root.Add(InfoCommand.Create());
        root.Add(DataCommand.Create());
        root.Add(BenchCommand.Create());
        root.Add(ImportCommand.Create());
        root.Add(ExportCommand.Create());
        root.Add(ClassifierCommand.Create());
        root.Add(EvalCommand.Create());
        root.Add(ServeCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        Runtime.ParentWatch.StartFromEnvironment(); // a child of a test host or job runner dies with it (DDPM_EXIT_WITH_PARENT)
        try
        {
            Runtime.LibTorchLocation.UseFromEnvironment();
        }
        catch (Exception e) when (e is IOException or DllNotFoundException or BadImageFormatException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine("Run 'ddpm --help' (or 'ddpm COMMAND --help') for usage.");
            return Usage;
        }
        // Under mpirun (only): join the MPI job before anything starts CUDA; a plain process loads no MPI.
        MpiCommunicator? mpi;
        try { mpi = DistributedJob.Join(); }
        catch (DistributedException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failure;
        }
        int code;
        try
        {
            code = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            code = Report(e, mpi is { Size: > 1 } ? $"rank {mpi.Rank}: " : "");
            // The other ranks may be waiting for this one inside a collective: end the whole job (mpirun stops them).
            mpi?.Abort(code);
            return code;
        }
        mpi?.Finish();
        return code;
    }

    /// <summary>One clear line per known failure; a stack trace only for bugs.</summary>
    internal static int Report(Exception e, string prefix = "")
    {
        switch (e)
        {
            case UsageException u:
                Console.Error.WriteLine($"{prefix}error: {u.Message}");
                return Usage;
            case ConfigException or DataException or CheckpointException or TrainingException or WeightsException or DistributedException:
                Console.Error.WriteLine($"{prefix}error: {e.Message}");
                return Failure;
            case OperationCanceledException:
                Console.Error.WriteLine($"{prefix}cancelled");
                return Failure;
            default:
                Console.Error.WriteLine($"{prefix}error: unexpected failure: {e}");
                return Failure;
        }
    }
}

/// <summary>A bad command-line value (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);
