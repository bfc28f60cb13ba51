using System.Runtime.InteropServices;

namespace Ddpm.Distributed;

/// <summary>libc's dlopen with RTLD_GLOBAL and setenv for native readers, which .NET's own APIs do not offer.</summary>
internal static class NativeLoader
{
    private const int RtldNow = 0x2, RtldGlobal = 0x100;

    /// <summary>dlopen(<paramref name="name"/>, RTLD_NOW | RTLD_GLOBAL); zero and dlerror()'s text when it
    /// fails.</summary>
    public static IntPtr OpenGlobal(string name, out string error)
    {
        error = "";
        IntPtr handle;
        try
        {
            handle = dlopen(name, RtldNow | RtldGlobal);
            if (handle == IntPtr.Zero) error = Marshal.PtrToStringUTF8(dlerror()) ?? $"{name}: cannot open";
        }
        catch (EntryPointNotFoundException)
        {
            handle = dlopenLibdl(name, RtldNow | RtldGlobal);
            if (handle == IntPtr.Zero) error = Marshal.PtrToStringUTF8(dlerrorLibdl()) ?? $"{name}: cannot open";
        }
        return handle;
    }

    /// <summary>Sets a variable in the process environment that native libraries read
    /// (Environment.SetEnvironmentVariable does not reach it on Unix).</summary>
    public static void SetNativeEnvironment(string name, string value)
    {
        if (setenv(name, value, 1) != 0) throw new DistributedException($"setenv({name}) failed");
    }

    // glibc ≥ 2.34 has dlopen in libc itself (Debian 12: 2.36); older glibc keeps it in libdl, which libc.so.6 then
    // lacks.
    [DllImport("libc.so.6", EntryPoint = "dlopen")]
    private static extern IntPtr dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);

    [DllImport("libc.so.6", EntryPoint = "dlerror")]
    private static extern IntPtr dlerror();

    [DllImport("libdl.so.2", EntryPoint = "dlopen")]
    private static extern IntPtr dlopenLibdl([MarshalAs(UnmanagedType.LPUTF8Str)] string file, int mode);

    [DllImport("libdl.so.2", EntryPoint = "dlerror")]
    private static extern IntPtr dlerrorLibdl();

    [DllImport("libc.so.6", EntryPoint = "setenv")]
    private static extern int setenv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);
}
