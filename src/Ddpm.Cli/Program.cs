// First, while descriptors are free: a process below the open-file limit ddpm needs says so in one line, rather than
// failing midway when an assembly or a file cannot be opened (docs/cli.md).
if (Ddpm.Runtime.DescriptorLimit.Shortfall(Ddpm.Cli.CliApp.MinimumDescriptors, "ddpm") is { } shortfall)
{
    // Straight to descriptor 2: Console would first load another assembly, which may be what cannot be opened.
    using var stderr = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(2, ownsHandle: false), FileAccess.Write, 1);
    stderr.Write(System.Text.Encoding.UTF8.GetBytes($"error: {shortfall}\n"));
    return Ddpm.Cli.CliApp.Failure;
}
return Ddpm.Cli.CliApp.Run(args);
