// First, while descriptors are free: below the limit ddpm needs, one line instead of a crash midway (docs/cli.md).
return Ddpm.Runtime.DescriptorLimit.Refuse(Ddpm.Cli.CliApp.MinimumDescriptors, "ddpm")
    ? Ddpm.Cli.CliApp.Failure
    : Ddpm.Cli.CliApp.Run(args);
