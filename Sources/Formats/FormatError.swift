// Errors for every file format in this module. Each description is one line that starts with the file it is
// about, so a user who points the tool at the wrong file sees at once which file and what is wrong with it.
import Foundation
import Support

public enum FormatError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist.
    case missingFile(path: String)
    /// The file exists but could not be opened, measured or mapped.
    case io(path: String, reason: String)
    /// The first four bytes are not the GGUF magic.
    case badMagic(path: String, found: UInt32)
    /// A GGUF version this reader does not read (only 2 and 3 are).
    case unsupportedVersion(path: String, version: UInt32)
    /// The file ends before a structure that must be there: `need` bytes at `offset` for `what`.
    case truncated(path: String, what: String, offset: Int, need: Int, fileSize: Int)
    /// A structurally wrong file, with a human reason ("duplicate key x", "alignment 3 is not a power of two").
    case malformed(path: String, reason: String)
    /// A tensor's bytes lie (partly) outside the file or data section.
    case tensorOutOfRange(path: String, tensor: String, offset: Int, bytes: Int, fileSize: Int)
    /// A GGUF tensor type this reader cannot size or cannot dequantize.
    case unsupportedType(path: String, tensor: String, type: UInt32)
    /// A safetensors dtype that is unknown, or known but not convertible to Float.
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// A tensor whose shape disagrees with its byte size or with what a consumer needs.
    case shapeMismatch(path: String, tensor: String, reason: String)
    /// The safetensors header length points past the end of the file.
    case headerTooLong(path: String, length: UInt64, fileSize: Int)
    /// The safetensors JSON header (or a shard index) is not valid JSON of the expected form.
    case badHeader(path: String, reason: String)
    /// A tensor name asked for that the file does not hold.
    case tensorNotFound(path: String, tensor: String)

    /// The file the error is about.
    public var path: String {
        switch self {
        case .missingFile(let p), .io(let p, _), .badMagic(let p, _), .unsupportedVersion(let p, _),
             .truncated(let p, _, _, _, _), .malformed(let p, _), .tensorOutOfRange(let p, _, _, _, _),
             .unsupportedType(let p, _, _), .unsupportedDType(let p, _, _), .shapeMismatch(let p, _, _),
             .headerTooLong(let p, _, _), .badHeader(let p, _), .tensorNotFound(let p, _):
            return p
        }
    }

    /// One line (control characters from untrusted names escaped, length capped), starting with the file.
    public var description: String { oneLineMessage(rawDescription) }

    private var rawDescription: String {
        switch self {
        case .missingFile(let p):
            return "\(p): no such file"
        case .io(let p, let reason):
            return "\(p): \(reason)"
        case .badMagic(let p, let found):
            return "\(p): bad magic 0x\(hex32(found)) (expected \"GGUF\")"
        case .unsupportedVersion(let p, let v):
            if v == 1 {
                return "\(p): GGUF version 1 is not supported (only versions 2 and 3); re-convert the model with a current llama.cpp"
            }
            if v > 0xFFFF && v.byteSwapped <= 3 {
                return "\(p): unsupported GGUF version \(v) (looks like a big-endian GGUF; only little-endian versions 2 and 3 are read)"
            }
            return "\(p): unsupported GGUF version \(v) (only versions 2 and 3 are read)"
        case .truncated(let p, let what, let offset, let need, let size):
            return "\(p): truncated file: need \(need) bytes at offset \(offset) for \(what), but the file is \(size) bytes"
        case .malformed(let p, let reason):
            return "\(p): \(reason)"
        case .tensorOutOfRange(let p, let t, let offset, let bytes, let size):
            return "\(p): tensor \(t) data [offset \(offset), \(bytes) bytes] out of range (file \(size) bytes)"
        case .unsupportedType(let p, let t, let type):
            let name = GGMLType(rawValue: type).map { " (\($0.name))" } ?? ""
            return "\(p): tensor \(t) has unsupported type \(type)\(name)"
        case .unsupportedDType(let p, let t, let dtype):
            return "\(p): tensor \(t) has unsupported dtype \(dtype) (readable: F32, F16, BF16)"
        case .shapeMismatch(let p, let t, let reason):
            return "\(p): tensor \(t): \(reason)"
        case .headerTooLong(let p, let length, let size):
            return "\(p): header length \(length) past end of file (\(size) bytes)"
        case .badHeader(let p, let reason):
            return "\(p): bad header: \(reason)"
        case .tensorNotFound(let p, let t):
            return "\(p): no tensor named \(t)"
        }
    }
}

func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}
