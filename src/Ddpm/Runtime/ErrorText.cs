namespace Ddpm.Runtime;

/// <summary>Error messages as users see them: one line, without native backtraces or .NET stack frames.</summary>
public static class ErrorText
{
    /// <summary>
    /// The one line a user reads for a failure the library expects (bad input, a file-system error, too little memory,
    /// a cancellation); null for anything else, which is a bug to report with its stack trace.
    /// </summary>
    public static string? Describe(Exception e) => e switch
    {
        Configuration.ConfigException or Data.DataException or Training.CheckpointException or Training.TrainingException
            or Interop.WeightsException or Distributed.DistributedException or RequestException or TorchSharpNotPatchedException
            => OneLine(e.Message),
        OperationCanceledException => "cancelled",
        DllNotFoundException or BadImageFormatException => OneLine(e.Message), // a libtorch that is not there or not for this machine
        // The file system's own messages name the path ("Access to the path '/x' is denied.").
        UnauthorizedAccessException => OneLine($"permission denied: {e.Message}"),
        PathTooLongException => OneLine($"path too long: {e.Message}"),
        IOException or InsufficientMemoryException => OneLine(e.Message), // the latter refused before allocating, with the estimate
        OutOfMemoryException or InsufficientExecutionStackException => OneLine($"out of memory: {e.Message}"),
        System.Runtime.InteropServices.ExternalException when Training.Trainer.IsOutOfMemory(e) => OneLine($"out of memory: {e.Message}"),
        _ => null,
    };

    /// <summary>
    /// A message as one line of reasonable length: libtorch's C++ backtrace ("Exception raised from … frame #0: …") and
    /// .NET stack frames are cut, line breaks become "; " and very long text (a 50 MB name echoed back) is shortened.
    /// </summary>
    public static string OneLine(string message)
    {
        var lines = new List<string>();
        foreach (var raw in message.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            int raised = line.IndexOf("Exception raised from ", StringComparison.Ordinal);
            if (raised >= 0) line = line[..raised];
            var trimmed = line.Trim();
            if (trimmed.StartsWith("frame #", StringComparison.Ordinal) || trimmed.StartsWith("at ", StringComparison.Ordinal) && raw.StartsWith("   at ", StringComparison.Ordinal))
                break;
            if (raised >= 0)
            {
                if (trimmed.Length > 0) lines.Add(trimmed);
                break;
            }
            if (trimmed.Length > 0) lines.Add(trimmed);
        }
        var text = string.Join("; ", lines);
        return text.Length <= 2000 ? text : text[..1000] + $" …({text.Length - 1600:N0} characters left out)… " + text[^600..];
    }

}
