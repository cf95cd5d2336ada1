// GGUF reader (versions 2 and 3): header, metadata of every value type, tensor infos, aligned data section.
// The file is mmapped read-only for the object's life; `floats(_:)` dequantizes a tensor to Float exactly as
// ggml / gguf-py do. Layout reference: ggml/docs/gguf.md and ggml/src/gguf.cpp in llama.cpp.
import Dispatch
import Foundation

// MARK: - Types

/// ggml tensor types, with the block geometry of each (values per block, bytes per block).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39

    /// Values per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
        default: return 256
        }
    }

    /// Bytes per block (ggml's `type_size`).
    public var typeSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8: return 1
        case .i64, .f64: return 8
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q8_1: return 36
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .q8_K: return 292
        case .iq2_xxs: return 66
        case .iq2_xs: return 74
        case .iq3_xxs: return 98
        case .iq1_s: return 50
        case .iq4_nl: return 18
        case .iq3_s: return 110
        case .iq2_s: return 82
        case .iq4_xs: return 136
        case .iq1_m: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        case .mxfp4: return 17
        }
    }

    /// ggml's name for the type ("Q4_K", "F32").
    public var name: String {
        switch self {
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        default: return "\(self)".uppercased()
        }
    }

    /// Whether `GGUFFile.floats` can dequantize this type.
    public var isDequantizable: Bool { Dequantizer.supports(self) }
}

/// GGUF metadata value types as stored in the file.
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8
    case array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Smallest encoded size of one value (strings: the 8-byte length; arrays: type + count).
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// A metadata value. Integers keep their sign class, floats are widened to Double (exactly), arrays may nest.
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// Integer value if it is one (or an integral float) that fits in Int.
    public var int: Int? {
        switch self {
        case .uint(let v): return Int(exactly: v)
        case .int(let v): return Int(exactly: v)
        case .float(let v): return Int(exactly: v)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .uint(let v): return Double(v)
        case .int(let v): return Double(v)
        case .float(let v): return v
        default: return nil
        }
    }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a } else { return nil } }

    public var stringArray: [String]? {
        guard case .array(let a) = self else { return nil }
        var out = [String]()
        out.reserveCapacity(a.count)
        for v in a { guard case .string(let s) = v else { return nil }; out.append(s) }
        return out
    }
    public var intArray: [Int]? {
        guard case .array(let a) = self else { return nil }
        var out = [Int]()
        out.reserveCapacity(a.count)
        for v in a { guard let i = v.int else { return nil }; out.append(i) }
        return out
    }
    public var floatArray: [Float]? {
        guard case .array(let a) = self else { return nil }
        var out = [Float]()
        out.reserveCapacity(a.count)
        for v in a { guard let d = v.double else { return nil }; out.append(Float(d)) }
        return out
    }
}

/// One tensor's directory entry.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml `ne` order: shape[0] is the innermost (fastest-varying) dimension.
    public let shape: [Int]
    public let type: GGMLType
    /// Offset of the tensor's bytes relative to the start of the data section.
    public let offset: Int
    /// Absolute offset of the tensor's bytes in the file.
    public let fileOffset: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount / type.blockSize * type.typeSize }
    /// Shape in PyTorch / Hugging Face order (outermost first) = reversed `shape`.
    public var hfShape: [Int] { shape.reversed() }
}

// MARK: - Reader

public final class GGUFFile: @unchecked Sendable {
    public static let defaultAlignment = 32
    /// "GGUF" read as a little-endian UInt32.
    public static let magic: UInt32 = 0x4655_4747

    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// The stored type of each metadata value (for arrays: `.array`).
    public let metadataTypes: [String: GGUFValueType]
    /// The element type of each top-level array value (so a value can be copied into another file exactly).
    public let metadataArrayElementTypes: [String: GGUFValueType]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset of the (aligned) data section.
    public let dataOffset: Int
    public var fileSize: Int { file.size }

    private let file: MappedFile
    private let index: [String: Int]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var r = ByteReader(file.bytes, path: path)

        let magic = try r.read(UInt32.self, "magic")
        guard magic == GGUFFile.magic else { throw FormatError.badMagic(path: path, found: magic) }
        let version = try r.read(UInt32.self, "version")
        guard version == 2 || version == 3 else { throw FormatError.unsupportedVersion(path: path, version: version) }
        self.version = Int(version)
        // Minimal encodings: a tensor info is >= 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
        // a key/value is >= 8 (key length) + 4 (type) + 1 bytes.
        let tensorCount = try r.readCount("tensor count", unit: 24)
        let kvCount = try r.readCount("metadata count", unit: 13)

        var metadata = [String: GGUFValue](minimumCapacity: kvCount)
        var types = [String: GGUFValueType](minimumCapacity: kvCount)
        var elementTypes = [String: GGUFValueType]()
        var keys = [String]()
        keys.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let key = try r.readString("metadata key #\(i)")
            let rawType = try r.read(UInt32.self, "type of metadata \(key)")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw FormatError.malformed(path: path, reason: "metadata \(key) has unknown value type \(rawType)")
            }
            if metadata[key] != nil {
                throw FormatError.malformed(path: path, reason: "duplicate metadata key \(key)")
            }
            if type == .array, r.remaining >= 4 {
                elementTypes[key] = GGUFValueType(rawValue: r.bytes.loadUnaligned(fromByteOffset: r.offset, as: UInt32.self).littleEndian)
            }
            metadata[key] = try GGUFFile.readValue(&r, type: type, key: key, depth: 0)
            types[key] = type
            keys.append(key)
        }

        var alignment = GGUFFile.defaultAlignment
        if let a = metadata["general.alignment"] {
            guard let v = a.int, v > 0, v & (v - 1) == 0, v <= 1 << 30 else {
                throw FormatError.malformed(path: path, reason: "general.alignment \(a) is not a positive power of two")
            }
            alignment = v
        }

        var infos = [GGUFTensorInfo]()
        infos.reserveCapacity(tensorCount)
        var relative = [(name: String, shape: [Int], type: GGMLType, offset: Int)]()
        relative.reserveCapacity(tensorCount)
        var index = [String: Int](minimumCapacity: tensorCount)
        for i in 0..<tensorCount {
            let name = try r.readString("name of tensor #\(i)")
            let nDims = try r.read(UInt32.self, "n_dims of tensor \(name)")
            guard nDims <= 4 else {
                throw FormatError.malformed(path: path, reason: "tensor \(name) has \(nDims) dimensions (at most 4)")
            }
            var shape = [Int]()
            var count = 1
            for d in 0..<Int(nDims) {
                let ne = try r.read(UInt64.self, "dimension \(d) of tensor \(name)")
                guard ne <= UInt64(Int32.max) * 1024 else {
                    throw FormatError.malformed(path: path, reason: "tensor \(name) dimension \(d) is \(ne), too large")
                }
                shape.append(Int(ne))
                let (c, o) = count.multipliedReportingOverflow(by: Int(ne))
                guard !o, c <= Int(Int32.max) * 64 else {
                    throw FormatError.malformed(path: path, reason: "tensor \(name) shape \(shape) has too many elements")
                }
                count = c
            }
            let rawType = try r.read(UInt32.self, "type of tensor \(name)")
            guard let type = GGMLType(rawValue: rawType) else {
                throw FormatError.unsupportedType(path: path, tensor: name, type: rawType)
            }
            let offset = try r.read(UInt64.self, "data offset of tensor \(name)")
            guard offset <= UInt64(Int.max / 2) else {
                throw FormatError.tensorOutOfRange(path: path, tensor: name, offset: Int.max, bytes: 0, fileSize: file.size)
            }
            let rowLength = shape.first ?? 1
            if rowLength % type.blockSize != 0 {
                throw FormatError.shapeMismatch(path: path, tensor: name,
                    reason: "row length \(rowLength) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            if Int(offset) % alignment != 0 {
                throw FormatError.malformed(path: path,
                    reason: "tensor \(name) data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            if index[name] != nil {
                throw FormatError.malformed(path: path, reason: "duplicate tensor name \(name)")
            }
            index[name] = i
            relative.append((name, shape, type, Int(offset)))
        }

        let rem = r.offset % alignment
        let dataOffset = rem == 0 ? r.offset : r.offset + (alignment - rem)
        for t in relative {
            let bytes = t.shape.reduce(1, *) / t.type.blockSize * t.type.typeSize
            let start = dataOffset + t.offset
            guard start <= file.size, bytes <= file.size - start else {
                throw FormatError.tensorOutOfRange(path: path, tensor: t.name, offset: start, bytes: bytes,
                                                   fileSize: file.size)
            }
            infos.append(GGUFTensorInfo(name: t.name, shape: t.shape, type: t.type, offset: t.offset,
                                        fileOffset: start))
        }

        self.metadata = metadata
        self.metadataKeys = keys
        self.metadataTypes = types
        self.metadataArrayElementTypes = elementTypes
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.tensors = infos
        self.index = index
    }

    private static func readValue(_ r: inout ByteReader, type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint(UInt64(try r.read(UInt8.self, "value of \(key)")))
        case .int8: return .int(Int64(try r.read(Int8.self, "value of \(key)")))
        case .uint16: return .uint(UInt64(try r.read(UInt16.self, "value of \(key)")))
        case .int16: return .int(Int64(try r.read(Int16.self, "value of \(key)")))
        case .uint32: return .uint(UInt64(try r.read(UInt32.self, "value of \(key)")))
        case .int32: return .int(Int64(try r.read(Int32.self, "value of \(key)")))
        case .uint64: return .uint(try r.read(UInt64.self, "value of \(key)"))
        case .int64: return .int(try r.read(Int64.self, "value of \(key)"))
        case .float32: return .float(Double(Float(bitPattern: try r.read(UInt32.self, "value of \(key)"))))
        case .float64: return .float(Double(bitPattern: try r.read(UInt64.self, "value of \(key)")))
        case .bool: return .bool(try r.read(UInt8.self, "value of \(key)") != 0)
        case .string: return .string(try r.readString("value of \(key)"))
        case .array:
            guard depth < 8 else {
                throw FormatError.malformed(path: r.path, reason: "metadata \(key) nests arrays deeper than 8 levels")
            }
            let rawElem = try r.read(UInt32.self, "array type of \(key)")
            guard let elem = GGUFValueType(rawValue: rawElem) else {
                throw FormatError.malformed(path: r.path, reason: "metadata \(key) is an array of unknown type \(rawElem)")
            }
            let n = try r.readCount("array length of \(key)", unit: elem.minimumSize)
            var out = [GGUFValue]()
            out.reserveCapacity(n)
            // Tight loops for the common element types (the tokenizer arrays hold ~50k entries).
            switch elem {
            case .string:
                for i in 0..<n { out.append(.string(try r.readString("\(key)[\(i)]"))) }
            case .int32:
                for i in 0..<n { out.append(.int(Int64(try r.read(Int32.self, "\(key)[\(i)]")))) }
            case .float32:
                for i in 0..<n { out.append(.float(Double(Float(bitPattern: try r.read(UInt32.self, "\(key)[\(i)]"))))) }
            default:
                for i in 0..<n { out.append(try readValue(&r, type: elem, key: "\(key)[\(i)]", depth: depth + 1)) }
            }
            return .array(out)
        }
    }

    /// The info of the tensor called `name`, if present.
    public func tensor(named name: String) -> GGUFTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// Drops a tensor's mapped pages from the resident set (see `MappedFile.release`).
    public func release(_ info: GGUFTensorInfo) { file.release(offset: info.fileOffset, count: info.byteCount) }

    /// The raw bytes of a tensor (valid while `self` is alive).
    public func rawBytes(_ info: GGUFTensorInfo) throws -> UnsafeRawBufferPointer {
        try file.slice(offset: info.fileOffset, count: info.byteCount, tensor: info.name)
    }

    /// The tensor's values as Float, row-major with ne[0] fastest (so a 2-D weight comes out as
    /// [ne[1] rows × ne[0] columns] = the Hugging Face [out, in] matrix).
    public func floats(_ info: GGUFTensorInfo) throws -> [Float] {
        try floats(info, sourceRow: nil)
    }

    /// Rows `rows` of a 2-D tensor decoded into `out` ([rows.count × ne[0]]), reading only those rows' blocks (the
    /// token-embedding lookup of a low-memory stage).
    public func rows(_ info: GGUFTensorInfo, _ rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        guard Dequantizer.supports(info.type) else {
            throw FormatError.unsupportedType(path: path, tensor: info.name, type: info.type.rawValue)
        }
        guard info.shape.count == 2 else {
            throw FormatError.shapeMismatch(path: path, tensor: info.name, reason: "expected 2 dimensions, got shape \(info.shape)")
        }
        let bytes = try rawBytes(info)
        let rowLength = info.shape[0], count = info.shape[1]
        let blocksPerRow = rowLength / info.type.blockSize, rowBytes = blocksPerRow * info.type.typeSize
        guard let src = bytes.baseAddress, count * rowBytes == bytes.count else {
            throw FormatError.shapeMismatch(path: path, tensor: info.name, reason: "byte size does not match shape \(info.shape)")
        }
        for (i, r) in rows.enumerated() {
            guard r >= 0, r < count else {
                throw FormatError.shapeMismatch(path: path, tensor: info.name, reason: "row \(r) of \(count)")
            }
            Dequantizer.decode(info.type, src + r * rowBytes, out + i * rowLength, blocksPerRow)
        }
    }

    /// Like `floats(_:)`, but output row r is decoded from source row `sourceRow(r)` (rows are ne[0] long).
    /// `sourceRow` must be a permutation of 0..<rows.
    func floats(_ info: GGUFTensorInfo, sourceRow: (@Sendable (Int) -> Int)?) throws -> [Float] {
        guard Dequantizer.supports(info.type) else {
            throw FormatError.unsupportedType(path: path, tensor: info.name, type: info.type.rawValue)
        }
        let bytes = try rawBytes(info)
        let n = info.elementCount
        if n == 0 { return [] }
        let rowLength = info.shape.first ?? 1
        let rows = n / rowLength
        let blocksPerRow = rowLength / info.type.blockSize
        let rowBytes = blocksPerRow * info.type.typeSize
        guard let src = bytes.baseAddress, rows * rowBytes == bytes.count else {
            throw FormatError.shapeMismatch(path: path, tensor: info.name, reason: "byte size does not match shape \(info.shape)")
        }
        let type = info.type
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            guard let dst = buffer.baseAddress else { initialized = 0; return }
            let out = SendablePointer(dst), input = SendableRawPointer(src)
            let chunks = n < 1 << 15 ? 1 : min(rows, ProcessInfo.processInfo.activeProcessorCount * 4)
            let work: @Sendable (Int) -> Void = { c in
                let lo = rows * c / chunks, hi = rows * (c + 1) / chunks
                for row in lo..<hi {
                    let s = sourceRow?(row) ?? row
                    Dequantizer.decode(type, input.p + s * rowBytes, out.p + row * rowLength, blocksPerRow)
                }
            }
            if chunks == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: chunks, execute: work) }
            initialized = n
        }
    }
}

/// Pointers handed to `concurrentPerform` workers that write disjoint ranges.
struct SendablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}
struct SendableRawPointer: @unchecked Sendable {
    let p: UnsafeRawPointer
    init(_ p: UnsafeRawPointer) { self.p = p }
}
