return Ddpm.Cli.CliApp.Run(args);
