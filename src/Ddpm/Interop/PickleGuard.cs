using System.Buffers.Binary;
using System.Text;

namespace Ddpm.Interop;

/// <summary>
/// Walks a pickle's opcodes, without executing any, and refuses it unless every global it names is on an allow-list of
/// what <c>torch.save(state_dict)</c> needs: <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor(_v2)</c>,
/// <c>torch._utils._rebuild_parameter</c> and the <c>torch.*Storage</c> types.
/// </summary>
/// <remarks>
/// Razorvine.Pickle (under TorchSharp.PyBridge) runs no Python, but it turns an unknown global into a generic
/// class-dict object and has built-in constructors for other types (datetime, decimal, set, array, bytearray,
/// exceptions); its constructor table is process-wide and anyone may add to it. So the bytes are checked here first,
/// and opcodes that build objects by other routes (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, text PERSID) are refused.
/// STACK_GLOBAL is accepted only when its module and name are strings pushed right before it (as Python emits them).
/// </remarks>
internal static class PickleGuard
{
    private static readonly HashSet<string> AllowedGlobals =
    [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        // The storages PyBridge's unpickler maps to a dtype.
        "torch.DoubleStorage", "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
        "torch.BoolStorage", "torch.ComplexDoubleStorage", "torch.ComplexFloatStorage",
    ];

    /// <summary>Nesting of MARKed containers accepted (a state_dict's pickle nests 3 deep).</summary>
    public const int MaxMarkDepth = 64;
    /// <summary>The largest pickle accepted (the pickle holds names and shapes; the tensors' bytes are separate
    /// entries).</summary>
    public const long MaxPickleBytes = 64L << 20;

    /// <summary>Allowed globals, for error messages.</summary>
    internal static IReadOnlyCollection<string> Allowed => AllowedGlobals;

    /// <summary>Throws <see cref="WeightsException"/> naming the first refused global or opcode.</summary>
    public static void Verify(ReadOnlySpan<byte> pickle, string path)
    {
        var memo = new Dictionary<long, string?>();
        string? last = null, beforeLast = null; // string values pushed by the last two stack-pushing opcodes
        int pos = 0, marks = 0;
        if (pickle.Length > MaxPickleBytes) throw Refuse(path, $"the pickle holds {pickle.Length:N0} bytes, more than the {MaxPickleBytes:N0} a state_dict needs");
        while (true)
        {
            if (pos >= pickle.Length) throw Refuse(path, "the pickle ends without a STOP opcode (truncated)");
            int at = pos;
            byte op = pickle[pos++];
            string? pushed = null;       // the string this opcode pushes, if any
            bool pushes = true;          // whether this opcode replaces the "last pushed" window
            switch (op)
            {
                case (byte)'.': // STOP
                    return;
                case 0x80: Skip(ref pos, 1, pickle, path); pushes = false; break; // PROTO
                case 0x95: Skip(ref pos, 8, pickle, path); pushes = false; break; // FRAME
                case (byte)'(': // MARK
                    if (++marks > MaxMarkDepth) throw Refuse(path, $"containers nested more than {MaxMarkDepth} deep (byte {at})");
                    break;
                case (byte)'1': case (byte)'t': case (byte)'l': case (byte)'d': case (byte)'e': case (byte)'u': case 0x90: case 0x91:
                    // POP_MARK TUPLE LIST DICT APPENDS SETITEMS ADDITEMS FROZENSET: each closes the innermost MARK
                    marks = Math.Max(0, marks - 1);
                    break;
                case (byte)'0': case (byte)'2': // POP DUP
                case (byte)'N': case 0x88: case 0x89: // NONE NEWTRUE NEWFALSE
                case (byte)')': case (byte)']': case (byte)'}': case 0x8f: // EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET
                case 0x85: case 0x86: case 0x87: // TUPLE1 TUPLE2 TUPLE3
                case (byte)'a': case (byte)'s': // APPEND SETITEM
                case (byte)'R': case (byte)'b': case (byte)'Q': // REDUCE BUILD BINPERSID (callables/ids come from allowed globals)
                case 0x97: case 0x98: // NEXT_BUFFER READONLY_BUFFER
                    break;
                case (byte)'J': Skip(ref pos, 4, pickle, path); break; // BININT
                case (byte)'K': Skip(ref pos, 1, pickle, path); break; // BININT1
                case (byte)'M': Skip(ref pos, 2, pickle, path); break; // BININT2
                case (byte)'G': Skip(ref pos, 8, pickle, path); break; // BINFLOAT
                case (byte)'I': case (byte)'L': case (byte)'F': case (byte)'S': // INT LONG FLOAT STRING (text)
                    Line(ref pos, pickle, path);
                    break;
                case (byte)'V': pushed = Line(ref pos, pickle, path); break; // UNICODE
                case 0x8a: Skip(ref pos, Len(ref pos, 1, pickle, path), pickle, path); break; // LONG1
                case 0x8b: Skip(ref pos, Len(ref pos, 4, pickle, path), pickle, path); break; // LONG4
                case (byte)'T': case (byte)'B': Skip(ref pos, Len(ref pos, 4, pickle, path), pickle, path); break; // BINSTRING BINBYTES
                case (byte)'U': case (byte)'C': Skip(ref pos, Len(ref pos, 1, pickle, path), pickle, path); break; // SHORT_BINSTRING SHORT_BINBYTES
                case 0x8e: case 0x96: Skip(ref pos, Len(ref pos, 8, pickle, path), pickle, path); break; // BINBYTES8 BYTEARRAY8
                case (byte)'X': pushed = Utf8(ref pos, Len(ref pos, 4, pickle, path), pickle, path); break; // BINUNICODE
                case 0x8c: pushed = Utf8(ref pos, Len(ref pos, 1, pickle, path), pickle, path); break; // SHORT_BINUNICODE
                case 0x8d: pushed = Utf8(ref pos, Len(ref pos, 8, pickle, path), pickle, path); break; // BINUNICODE8
                case (byte)'g': pushed = Get(memo, ParseIndex(Line(ref pos, pickle, path), path)); break; // GET
                case (byte)'h': pushed = Get(memo, Len(ref pos, 1, pickle, path)); break; // BINGET
                case (byte)'j': pushed = Get(memo, Len(ref pos, 4, pickle, path)); break; // LONG_BINGET
                case (byte)'p': memo[ParseIndex(Line(ref pos, pickle, path), path)] = last; pushes = false; break; // PUT
                case (byte)'q': memo[Len(ref pos, 1, pickle, path)] = last; pushes = false; break; // BINPUT
                case (byte)'r': memo[Len(ref pos, 4, pickle, path)] = last; pushes = false; break; // LONG_BINPUT
                case 0x94: memo[memo.Count] = last; pushes = false; break; // MEMOIZE
                case (byte)'c': // GLOBAL
                {
                    var module = Line(ref pos, pickle, path);
                    var name = Line(ref pos, pickle, path);
                    Check(module, name, path);
                    break;
                }
                case 0x93: // STACK_GLOBAL
                    if (beforeLast is null || last is null)
                        throw Refuse(path, $"STACK_GLOBAL at byte {at} takes its name from values this check cannot follow");
                    Check(beforeLast, last, path);
                    break;
                case (byte)'i': // INST
                {
                    var module = Line(ref pos, pickle, path);
                    var name = Line(ref pos, pickle, path);
                    throw Refuse(path, $"it instantiates {module}.{name} (INST); a state_dict holds only tensors and plain containers");
                }
                case (byte)'o': throw Refuse(path, $"it instantiates an object (OBJ at byte {at})");
                case 0x81: throw Refuse(path, $"it instantiates an object (NEWOBJ at byte {at})");
                case 0x92: throw Refuse(path, $"it instantiates an object (NEWOBJ_EX at byte {at})");
                case 0x82: case 0x83: case 0x84: throw Refuse(path, $"it uses the copyreg extension registry (EXT at byte {at})");
                case (byte)'P': throw Refuse(path, $"it uses a text persistent id (PERSID at byte {at}), which torch.save never writes");
                default:
                    throw Refuse(path, $"unknown pickle opcode 0x{op:x2} at byte {at}");
            }
            if (pushes)
            {
                beforeLast = last;
                last = pushed;
            }
        }
    }

    private static void Check(string module, string name, string path)
    {
        var full = module + "." + name;
        if (!AllowedGlobals.Contains(full))
            throw Refuse(path, $"it references the global {full}, which is not a tensor or plain container " +
                "(a crafted or non-state_dict pickle; only torch.save(model.state_dict()) files are accepted)");
    }

    private static WeightsException Refuse(string path, string why) => new(path, "refused to unpickle: " + why);

    private static string? Get(Dictionary<long, string?> memo, long index) => memo.GetValueOrDefault(index);

    private static void Skip(ref int pos, long count, ReadOnlySpan<byte> data, string path)
    {
        if (count < 0 || count > data.Length - pos) throw Refuse(path, "an opcode argument runs past the end (truncated)");
        pos += (int)count;
    }

    /// <summary>Reads a little-endian unsigned length or index of 1, 2, 4 or 8 bytes.</summary>
    private static long Len(ref int pos, int bytes, ReadOnlySpan<byte> data, string path)
    {
        if (bytes > data.Length - pos) throw Refuse(path, "an opcode argument runs past the end (truncated)");
        var s = data.Slice(pos, bytes);
        pos += bytes;
        return bytes switch
        {
            1 => s[0],
            2 => BinaryPrimitives.ReadUInt16LittleEndian(s),
            4 => BinaryPrimitives.ReadUInt32LittleEndian(s),
            _ => (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(s), long.MaxValue),
        };
    }

    private static string Utf8(ref int pos, long count, ReadOnlySpan<byte> data, string path)
    {
        int start = pos;
        Skip(ref pos, count, data, path);
        return Encoding.UTF8.GetString(data.Slice(start, (int)count));
    }

    private static string Line(ref int pos, ReadOnlySpan<byte> data, string path)
    {
        int end = data[pos..].IndexOf((byte)'\n');
        if (end < 0) throw Refuse(path, "a text argument has no newline (truncated)");
        var s = Encoding.UTF8.GetString(data.Slice(pos, end));
        pos += end + 1;
        return s;
    }

    private static long ParseIndex(string s, string path) =>
        long.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var v)
            ? v : throw Refuse(path, $"bad memo index '{s}'");
}
