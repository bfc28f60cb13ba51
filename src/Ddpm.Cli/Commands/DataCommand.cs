using System.CommandLine;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm data</c>: fetch and check datasets.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var cmd = new Command("data", "Download or locate datasets");
        return cmd;
    }
}
