namespace Ddpm;

/// <summary>
/// A request the caller can fix (a path, option or value that does not fit): hosts show its message as a usage error
/// (the CLI's exit code 2).
/// </summary>
public class RequestException(string message) : Exception(message);
