// A small GGUF (v3, or v2 on request) writer: typed metadata and tensors of any ggml type given as raw block
// bytes (or Float values for F32). Used by the tests to build fixtures and usable for exporting models.
import Foundation
import Support

/// A metadata value with its exact GGUF type, for writing.
public enum GGUFMetadataValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    /// An array whose elements all have type `elementType`.
    case array(GGUFValueType, [GGUFMetadataValue])

    public var valueType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    public static func strings(_ a: [String]) -> GGUFMetadataValue { .array(.string, a.map { .string($0) }) }
    public static func int32s(_ a: [Int32]) -> GGUFMetadataValue { .array(.int32, a.map { .int32($0) }) }
    public static func float32s(_ a: [Float]) -> GGUFMetadataValue { .array(.float32, a.map { .float32($0) }) }
}

public struct GGUFWriter: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        /// ggml `ne` order (innermost first).
        public var shape: [Int]
        public var type: GGMLType
        public var bytes: [UInt8]
    }

    public var version: UInt32
    public var alignment: Int
    public private(set) var metadata: [(key: String, value: GGUFMetadataValue)] = []
    public private(set) var tensors: [Tensor] = []

    public init(alignment: Int = GGUFFile.defaultAlignment, version: UInt32 = 3) {
        self.alignment = alignment
        self.version = version
    }

    /// Sets (or replaces) a metadata key; keys are written in first-set order.
    public mutating func set(_ key: String, _ value: GGUFMetadataValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i].value = value
        } else {
            metadata.append((key, value))
        }
    }

    /// Adds a tensor from raw ggml block bytes; `shape` is in ggml `ne` order.
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, bytes: [UInt8]) throws {
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), (shape.first ?? 1) % type.blockSize == 0,
              n / type.blockSize * type.typeSize == bytes.count else {
            throw FormatError.shapeMismatch(path: "<GGUFWriter>", tensor: name,
                reason: "\(bytes.count) bytes do not fit shape \(shape) of type \(type.name)")
        }
        tensors.append(Tensor(name: name, shape: shape, type: type, bytes: bytes))
    }

    /// Adds an F32 tensor; `shape` is in ggml `ne` order.
    public mutating func addTensor(name: String, shape: [Int], values: [Float]) throws {
        try addTensor(name: name, shape: shape, type: .f32, bytes: values.withUnsafeBytes { Array($0) })
    }

    public func serialize() throws -> Data {
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw FormatError.malformed(path: "<GGUFWriter>", reason: "alignment \(alignment) is not a power of two")
        }
        var meta = metadata
        if alignment != GGUFFile.defaultAlignment && !meta.contains(where: { $0.key == "general.alignment" }) {
            meta.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        var out = Data()
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func putValue(_ v: GGUFMetadataValue) throws {
            switch v {
            case .uint8(let x): put(x)
            case .int8(let x): put(x)
            case .uint16(let x): put(x)
            case .int16(let x): put(x)
            case .uint32(let x): put(x)
            case .int32(let x): put(x)
            case .uint64(let x): put(x)
            case .int64(let x): put(x)
            case .float32(let x): put(x.bitPattern)
            case .float64(let x): put(x.bitPattern)
            case .bool(let x): put(UInt8(x ? 1 : 0))
            case .string(let s): putString(s)
            case .array(let t, let a):
                put(t.rawValue)
                put(UInt64(a.count))
                for e in a {
                    guard e.valueType == t else {
                        throw FormatError.malformed(path: "<GGUFWriter>", reason: "array of \(t) holds a \(e.valueType)")
                    }
                    try putValue(e)      // a nested array is again (type, count, items)
                }
            }
        }
        put(GGUFFile.magic)
        put(version)
        put(UInt64(tensors.count))
        put(UInt64(meta.count))
        for (k, v) in meta {
            putString(k)
            put(v.valueType.rawValue)
            try putValue(v)
        }
        var offsets = [Int]()
        var cursor = 0
        for t in tensors {
            offsets.append(cursor)
            cursor += t.bytes.count
            cursor = (cursor + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            putString(t.name)
            put(UInt32(t.shape.count))
            for d in t.shape { put(UInt64(d)) }
            put(t.type.rawValue)
            put(UInt64(off))
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        for t in tensors {
            out.append(contentsOf: t.bytes)
            pad()
        }
        return out
    }

    public func write(to url: URL) throws {
        try AtomicFile.write(try serialize(), to: url)
    }
}
