// A small GGUF (v3, or v2 on request) writer: typed metadata and tensors of any ggml type given as raw block
// bytes (or Float values for F32), held in memory. Used by the tests to build fixtures; the model export streams
// through GGUFStreamWriter (same header encoding, GGUFHeader).
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
        var out = try GGUFHeader.encode(metadata: metadata, tensors: tensors.map { ($0.name, $0.shape, $0.type) },
                                        alignment: alignment, version: version)
        func pad() { while out.count % alignment != 0 { out.append(0) } }
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

extension GGUFFile {
    /// The value of `key` with its stored GGUF type, to copy into another file unchanged (nil when absent, or for an
    /// array of arrays, whose inner element types the reader does not keep).
    public func metadataValue(forKey key: String) -> GGUFMetadataValue? {
        guard let v = metadata[key], let t = metadataTypes[key] else { return nil }
        if t == .array {
            guard let e = metadataArrayElementTypes[key], e != .array, case .array(let items) = v else { return nil }
            var out = [GGUFMetadataValue]()
            out.reserveCapacity(items.count)
            for i in items {
                guard let m = Self.scalar(i, as: e) else { return nil }
                out.append(m)
            }
            return .array(e, out)
        }
        return Self.scalar(v, as: t)
    }

    private static func scalar(_ v: GGUFValue, as t: GGUFValueType) -> GGUFMetadataValue? {
        switch (t, v) {
        case (.uint8, .uint(let x)): return UInt8(exactly: x).map { .uint8($0) }
        case (.uint16, .uint(let x)): return UInt16(exactly: x).map { .uint16($0) }
        case (.uint32, .uint(let x)): return UInt32(exactly: x).map { .uint32($0) }
        case (.uint64, .uint(let x)): return .uint64(x)
        case (.int8, .int(let x)): return Int8(exactly: x).map { .int8($0) }
        case (.int16, .int(let x)): return Int16(exactly: x).map { .int16($0) }
        case (.int32, .int(let x)): return Int32(exactly: x).map { .int32($0) }
        case (.int64, .int(let x)): return .int64(x)
        case (.float32, .float(let x)): return .float32(Float(x))
        case (.float64, .float(let x)): return .float64(x)
        case (.bool, .bool(let b)): return .bool(b)
        case (.string, .string(let s)): return .string(s)
        default: return nil
        }
    }
}
