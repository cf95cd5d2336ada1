// A GGUF written tensor by tensor, never holding the model: the header (metadata and every tensor's name, shape,
// type and offset) is laid out up front from the declared tensors, then each tensor's bytes are appended in order.
// Everything goes to a hidden temporary file beside the target, renamed into place by `finish()`; a writer that is
// not finished (an error, or `abandon()`) leaves no file behind. Layout: ggml/docs/gguf.md in llama.cpp.
import Foundation
import Support

/// The header bytes of a GGUF: magic, version, counts, metadata, tensor infos, padded to the alignment.
enum GGUFHeader {
    static func encode(metadata: [(key: String, value: GGUFMetadataValue)], tensors: [(name: String, shape: [Int], type: GGMLType)],
                       alignment: Int, version: UInt32) throws -> Data {
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
        var cursor = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) / t.type.blockSize * t.type.typeSize
            putString(t.name)
            put(UInt32(t.shape.count))
            for d in t.shape { put(UInt64(d)) }
            put(t.type.rawValue)
            put(UInt64(cursor))
            cursor = (cursor + bytes + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        return out
    }
}

public final class GGUFStreamWriter {
    /// A tensor declared up front: name, shape in ggml `ne` order, type.
    public struct TensorInfo: Sendable {
        public var name: String
        public var shape: [Int]
        public var type: GGMLType
        public init(name: String, shape: [Int], type: GGMLType) {
            self.name = name
            self.shape = shape
            self.type = type
        }
        public var byteCount: Int { shape.reduce(1, *) / type.blockSize * type.typeSize }
    }

    public let target: URL
    public let tensors: [TensorInfo]
    public let alignment: Int
    private let temporary: URL
    private var handle: FileHandle?
    private var next = 0
    /// Bytes written so far (header, data, padding).
    public private(set) var bytesWritten = 0

    /// Creates the temporary file and writes the header. `target` is only replaced by `finish()`.
    public init(target: URL, metadata: [(key: String, value: GGUFMetadataValue)], tensors: [TensorInfo],
                alignment: Int = GGUFFile.defaultAlignment, version: UInt32 = 3) throws {
        var names = Set<String>()
        for t in tensors {
            guard names.insert(t.name).inserted else {
                throw FormatError.malformed(path: target.path, reason: "tensor \(t.name) declared twice")
            }
            guard t.shape.allSatisfy({ $0 >= 0 }), (t.shape.first ?? 1) % t.type.blockSize == 0 else {
                throw FormatError.shapeMismatch(path: target.path, tensor: t.name,
                                                reason: "shape \(t.shape) is not whole \(t.type.name) blocks")
            }
        }
        self.target = target
        self.tensors = tensors
        self.alignment = alignment
        temporary = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).tmp-\(getpid())")
        let header = try GGUFHeader.encode(metadata: metadata, tensors: tensors.map { ($0.name, $0.shape, $0.type) },
                                           alignment: alignment, version: version)
        try? FileManager.default.removeItem(at: temporary)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw SystemError(code: errno, path: target.path)
        }
        do {
            handle = try FileHandle(forWritingTo: temporary)
            try append(header)
        } catch {
            abandon()
            throw SystemError.from(error, path: target.path) ?? error
        }
    }

    deinit { abandon() }

    /// The next tensor's bytes (tensors are written in declaration order), then its padding.
    public func write(_ bytes: Data) throws {
        guard next < tensors.count else {
            throw FormatError.malformed(path: target.path, reason: "more tensors written than the \(tensors.count) declared")
        }
        let t = tensors[next]
        guard bytes.count == t.byteCount else {
            throw FormatError.shapeMismatch(path: target.path, tensor: t.name,
                                            reason: "\(bytes.count) bytes written, \(t.byteCount) declared")
        }
        try write(part: bytes, of: t.byteCount)
    }

    /// Part of the next tensor's bytes: call until its `total` bytes are in (for tensors converted in chunks).
    private var partial = 0
    public func write(part bytes: Data, of total: Int) throws {
        guard next < tensors.count else {
            throw FormatError.malformed(path: target.path, reason: "more tensors written than the \(tensors.count) declared")
        }
        let t = tensors[next]
        guard total == t.byteCount, partial + bytes.count <= total else {
            throw FormatError.shapeMismatch(path: target.path, tensor: t.name,
                                            reason: "\(partial + bytes.count) bytes written, \(t.byteCount) declared")
        }
        try append(bytes)
        partial += bytes.count
        if partial == total {
            let pad = (alignment - bytesWritten % alignment) % alignment
            if pad > 0 { try append(Data(count: pad)) }
            partial = 0
            next += 1
        }
    }

    /// Closes the file and renames it onto the target (replacing an existing one: the caller decides about --force).
    public func finish() throws {
        guard next == tensors.count, let h = handle else {
            throw FormatError.malformed(path: target.path,
                                        reason: "\(next) of \(tensors.count) tensors written; the file is incomplete")
        }
        do {
            try h.synchronize()
            try h.close()
            handle = nil
        } catch {
            abandon()
            throw SystemError.from(error, path: target.path) ?? error
        }
        if rename(temporary.path, target.path) != 0 {
            let e = SystemError(code: errno, path: target.path)
            abandon()
            throw e
        }
    }

    /// Removes the temporary file (nothing is left behind).
    public func abandon() {
        try? handle?.close()
        handle = nil
        try? FileManager.default.removeItem(at: temporary)
    }

    private func append(_ d: Data) throws {
        guard let h = handle else { throw FormatError.malformed(path: target.path, reason: "writer already closed") }
        do { try h.write(contentsOf: d) } catch { throw SystemError.from(error, path: target.path) ?? error }
        bytesWritten += d.count
    }
}
