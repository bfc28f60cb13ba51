using Mono.Cecil;
using Mono.Cecil.Cil;
using Mono.Cecil.Rocks;

namespace Ddpm.Build;

/// <summary>
/// The patch: TorchSharp hands a wrapper's native handle to libtorch without keeping the wrapper alive, so a garbage
/// collection started by another thread during the native call lets the finalizer free the Scalar or Tensor libtorch
/// is reading. The patch adds <c>TorchSharp.HandleKeepAlive</c>, a per-thread ring of the last <see cref="RingSize"/>
/// objects whose handle the thread read, and makes every read of a handle put its wrapper there first: the wrapper
/// stays reachable until that many more handles are read on the same thread, which is after the native call that
/// follows the read on that thread. Marked with <c>[assembly: AssemblyMetadata("Ddpm.HandleKeepAlive", Version)]</c>.
/// </summary>
internal static class KeepAlivePatch
{
    public const string MarkerKey = "Ddpm.HandleKeepAlive";

    /// <summary>Changes whenever the patch's output changes; Ddpm's runtime check expects this value.</summary>
    public const string Version = "2";

    /// <summary>
    /// Objects kept per thread: more than the handles one native call reads (torch.cat reads one per tensor), small
    /// enough that a thread keeps little alive after its last call. A power of two (the index wraps with a mask).
    /// </summary>
    public const int RingSize = 1024;

    public const string HelperNamespace = "TorchSharp";
    public const string HelperName = "HandleKeepAlive";

    /// <summary>The wrappers with a finalizer and an IntPtr handle that TorchSharp passes to native code.</summary>
    private static readonly string[] Wrappers = ["TorchSharp.Scalar", "TorchSharp.torch/Tensor", "TorchSharp.torch/Generator"];

    /// <summary>What <see cref="Apply"/> changed: the getters, and methods reading a handle field.</summary>
    public sealed record Report(IReadOnlyList<string> Getters, IReadOnlyList<string> FieldReads);

    /// <summary>The patch's version when <paramref name="module"/> carries the marker, else null.</summary>
    public static string? AppliedVersion(ModuleDefinition module)
    {
        foreach (var attribute in module.Assembly.CustomAttributes)
        {
            if (attribute.AttributeType.FullName != "System.Reflection.AssemblyMetadataAttribute"
                || attribute.ConstructorArguments.Count != 2) continue;
            if (attribute.ConstructorArguments[0].Value as string == MarkerKey)
                return attribute.ConstructorArguments[1].Value as string;
        }
        return null;
    }

    /// <summary>Patches <paramref name="module"/> in memory. Throws <see cref="PatchException"/> when it does not look
    /// like the TorchSharp this patch understands.</summary>
    public static Report Apply(ModuleDefinition module)
    {
        if (AppliedVersion(module) is { } existing)
            throw new PatchException($"already patched (version {existing})");
        var keep = AddHelper(module);
        var getters = new List<string>();
        var handleFields = new HashSet<FieldDefinition>();
        foreach (var name in Wrappers)
        {
            var type = module.GetType(name) ?? throw new PatchException($"has no type {name}");
            // Tensor and Scalar keep the handle in a field 'handle', Generator in an auto-property's backing field.
            var field = type.Fields.SingleOrDefault(f => f.Name is "handle" or "<Handle>k__BackingField" && f.FieldType.FullName == "System.IntPtr")
                ?? throw new PatchException($"{name} has no IntPtr field 'handle'");
            var getter = type.Properties.SingleOrDefault(p => p.Name == "Handle")?.GetMethod
                ?? throw new PatchException($"{name} has no Handle getter");
            if (getter.IsStatic || !getter.HasBody) throw new PatchException($"{name}.Handle is not an instance getter with a body");
            handleFields.Add(field);
            var il = getter.Body.GetILProcessor();
            var first = getter.Body.Instructions[0];
            var load = il.Create(OpCodes.Ldarg_0);
            il.InsertBefore(first, load);
            il.InsertBefore(first, il.Create(OpCodes.Call, keep));
            Retarget(getter.Body, first, load);
            getters.Add(getter.FullName);
        }

        // Code that reads the field instead of the property and then calls native code (e.g. Tensor.bytes,
        // WriteBytesToStream, ormqr's tau.handle): keep the object whose field is read. Dispose and the finalizer read
        // it too, on an object that is going away: left alone.
        var fieldReads = new List<string>();
        foreach (var type in module.GetTypes())
        {
            if (type.Namespace == HelperNamespace && type.Name == HelperName) continue;
            foreach (var method in type.Methods)
            {
                if (!method.HasBody || method.Name is "Dispose" or "Finalize" || method.IsGetter && method.Name == "get_Handle") continue;
                var body = method.Body;
                if (!body.Instructions.Any(i => ReadsHandle(i, handleFields)) || !body.Instructions.Any(CallsNativeCode)) continue;
                body.SimplifyMacros();
                var il = body.GetILProcessor();
                foreach (var read in body.Instructions.Where(i => ReadsHandle(i, handleFields)).ToList())
                {
                    var dup = il.Create(OpCodes.Dup); // [obj] -> [obj obj] -> Keep -> [obj] -> ldfld -> [handle]
                    il.InsertBefore(read, dup);
                    il.InsertBefore(read, il.Create(OpCodes.Call, keep));
                    Retarget(body, read, dup);
                }
                body.OptimizeMacros();
                fieldReads.Add(method.FullName);
            }
        }

        AddMarker(module);
        return new Report(getters, fieldReads);
    }

    // TorchSharp's fields and P/Invoke methods are its own: same-module operands are definitions (nothing to resolve).
    private static bool ReadsHandle(Instruction instruction, HashSet<FieldDefinition> handleFields) =>
        (instruction.OpCode == OpCodes.Ldfld || instruction.OpCode == OpCodes.Ldflda) && instruction.Operand is FieldDefinition f && handleFields.Contains(f);

    private static bool CallsNativeCode(Instruction instruction) =>
        instruction.OpCode == OpCodes.Call && instruction.Operand is MethodDefinition { IsPInvokeImpl: true };

    /// <summary>Branches and exception-handler bounds that pointed at <paramref name="from"/> now point at the code
    /// inserted before it, so every path into <paramref name="from"/> runs that code first.</summary>
    private static void Retarget(MethodBody body, Instruction from, Instruction to)
    {
        foreach (var instruction in body.Instructions)
        {
            if (instruction.Operand == from && instruction != to) instruction.Operand = to;
            else if (instruction.Operand is Instruction[] targets)
                for (int i = 0; i < targets.Length; i++)
                    if (targets[i] == from) targets[i] = to;
        }
        foreach (var handler in body.ExceptionHandlers)
        {
            if (handler.TryStart == from) handler.TryStart = to;
            if (handler.TryEnd == from) handler.TryEnd = to;
            if (handler.HandlerStart == from) handler.HandlerStart = to;
            if (handler.HandlerEnd == from) handler.HandlerEnd = to;
            if (handler.FilterStart == from) handler.FilterStart = to;
        }
    }

    /// <summary>
    /// internal static class HandleKeepAlive
    /// {
    ///     [ThreadStatic] static object[] ring; [ThreadStatic] static int next;
    ///     internal static void Keep(object value)
    ///     { var r = ring ??= new object[RingSize]; r[next] = value; next = (next + 1) &amp; (RingSize - 1); }
    ///     internal static void Release() { var r = ring; if (r != null) Array.Clear(r, 0, r.Length); }
    /// }
    /// Release is for a caller that knows none of its thread's native calls is in flight (between two steps of a
    /// loop): what the ring held would otherwise survive the next collections and be promoted with its native memory.
    /// </summary>
    private static MethodDefinition AddHelper(ModuleDefinition module)
    {
        if (module.GetType(HelperNamespace, HelperName) is not null)
            throw new PatchException($"already has a type {HelperNamespace}.{HelperName} (but no marker)");
        var objectType = module.TypeSystem.Object;
        var helper = new TypeDefinition(HelperNamespace, HelperName,
            TypeAttributes.NotPublic | TypeAttributes.Abstract | TypeAttributes.Sealed | TypeAttributes.BeforeFieldInit
            | TypeAttributes.Class, objectType);
        module.Types.Add(helper);

        var threadStatic = new MethodReference(".ctor", module.TypeSystem.Void,
            new TypeReference("System", "ThreadStaticAttribute", module, module.TypeSystem.CoreLibrary)) { HasThis = true };
        var ring = new FieldDefinition("ring", FieldAttributes.Private | FieldAttributes.Static, new ArrayType(objectType));
        var next = new FieldDefinition("next", FieldAttributes.Private | FieldAttributes.Static, module.TypeSystem.Int32);
        ring.CustomAttributes.Add(new CustomAttribute(threadStatic));
        next.CustomAttributes.Add(new CustomAttribute(threadStatic));
        helper.Fields.Add(ring);
        helper.Fields.Add(next);

        var keep = new MethodDefinition("Keep", MethodAttributes.Assembly | MethodAttributes.Static | MethodAttributes.HideBySig,
            module.TypeSystem.Void) { AggressiveInlining = true };
        keep.Parameters.Add(new ParameterDefinition("value", ParameterAttributes.None, objectType));
        var r = new VariableDefinition(new ArrayType(objectType));
        keep.Body.Variables.Add(r);
        keep.Body.InitLocals = true;
        var il = keep.Body.GetILProcessor();
        var have = il.Create(OpCodes.Ldloc, r);
        il.Emit(OpCodes.Ldsfld, ring);
        il.Emit(OpCodes.Stloc, r);
        il.Emit(OpCodes.Ldloc, r);
        il.Emit(OpCodes.Brtrue_S, have);
        il.Emit(OpCodes.Ldc_I4, RingSize);
        il.Emit(OpCodes.Newarr, objectType);
        il.Emit(OpCodes.Dup);
        il.Emit(OpCodes.Stloc, r);
        il.Emit(OpCodes.Stsfld, ring);
        il.Append(have);                 // r
        il.Emit(OpCodes.Ldsfld, next);   // r next
        il.Emit(OpCodes.Ldarg_0);        // r next value
        il.Emit(OpCodes.Stelem_Ref);     // r[next] = value
        il.Emit(OpCodes.Ldsfld, next);
        il.Emit(OpCodes.Ldc_I4_1);
        il.Emit(OpCodes.Add);
        il.Emit(OpCodes.Ldc_I4, RingSize - 1);
        il.Emit(OpCodes.And);
        il.Emit(OpCodes.Stsfld, next);   // next = (next + 1) & (RingSize - 1)
        il.Emit(OpCodes.Ret);
        keep.Body.OptimizeMacros();
        helper.Methods.Add(keep);

        var release = new MethodDefinition("Release", MethodAttributes.Assembly | MethodAttributes.Static | MethodAttributes.HideBySig,
            module.TypeSystem.Void);
        var clear = new MethodReference("Clear", module.TypeSystem.Void,
            new TypeReference("System", "Array", module, module.TypeSystem.CoreLibrary));
        clear.Parameters.Add(new ParameterDefinition(new TypeReference("System", "Array", module, module.TypeSystem.CoreLibrary)));
        clear.Parameters.Add(new ParameterDefinition(module.TypeSystem.Int32));
        clear.Parameters.Add(new ParameterDefinition(module.TypeSystem.Int32));
        var held = new VariableDefinition(new ArrayType(objectType));
        release.Body.Variables.Add(held);
        release.Body.InitLocals = true;
        il = release.Body.GetILProcessor();
        var done = il.Create(OpCodes.Ret);
        il.Emit(OpCodes.Ldsfld, ring);
        il.Emit(OpCodes.Stloc, held);
        il.Emit(OpCodes.Ldloc, held);
        il.Emit(OpCodes.Brfalse_S, done);
        il.Emit(OpCodes.Ldloc, held);    // Array.Clear(r, 0, r.Length)
        il.Emit(OpCodes.Ldc_I4_0);
        il.Emit(OpCodes.Ldloc, held);
        il.Emit(OpCodes.Ldlen);
        il.Emit(OpCodes.Conv_I4);
        il.Emit(OpCodes.Call, clear);
        il.Append(done);
        release.Body.OptimizeMacros();
        helper.Methods.Add(release);
        return keep;
    }

    private static void AddMarker(ModuleDefinition module)
    {
        var stringType = module.TypeSystem.String;
        var ctor = new MethodReference(".ctor", module.TypeSystem.Void,
            new TypeReference("System.Reflection", "AssemblyMetadataAttribute", module, module.TypeSystem.CoreLibrary)) { HasThis = true };
        ctor.Parameters.Add(new ParameterDefinition(stringType));
        ctor.Parameters.Add(new ParameterDefinition(stringType));
        var marker = new CustomAttribute(ctor);
        marker.ConstructorArguments.Add(new CustomAttributeArgument(stringType, MarkerKey));
        marker.ConstructorArguments.Add(new CustomAttributeArgument(stringType, Version));
        module.Assembly.CustomAttributes.Add(marker);
    }
}

/// <summary>The input is not a TorchSharp.dll this patch can handle; the message says why.</summary>
internal sealed class PatchException(string message) : Exception(message);
