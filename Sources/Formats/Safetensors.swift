// safetensors reader (single file and sharded via model.safetensors.index.json) and F32 writer.
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}?, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
// then the data section; offsets are relative to the data section start (8 + N).
import Dispatch
import Foundation
import Support

/// Byte sizes of the safetensors dtypes whose elements are whole bytes.
private let safetensorsDTypeSizes: [String: Int] = [
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
]

public final class SafetensorsFile: TensorSource, @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        /// Byte range relative to the start of the data section.
        public let begin: Int
        public let end: Int
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Headers larger than this are refused (as the reference implementation does).
    public static let maxHeaderLength = 100_000_000

    public let path: String
    /// `__metadata__`, if any.
    public let metadata: [String: String]
    /// Tensors in data-offset order.
    public let entries: [Entry]
    /// Absolute file offset of the data section.
    public let dataOffset: Int
    private let file: MappedFile
    private let index: [String: Int]

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var r = ByteReader(file.bytes, path: path)
        let n = try r.read(UInt64.self, "the header length")
        guard n <= UInt64(file.size - 8) else {
            throw FormatError.headerTooLong(path: path, length: n, fileSize: file.size)
        }
        guard n <= UInt64(SafetensorsFile.maxHeaderLength) else {
            throw FormatError.badHeader(path: path, reason: "header length \(n) exceeds the \(SafetensorsFile.maxHeaderLength)-byte limit")
        }
        let headerLength = Int(n)
        dataOffset = 8 + headerLength
        let dataSize = file.size - dataOffset
        let headerBytes = Data(UnsafeRawBufferPointer(rebasing: file.bytes[8..<dataOffset]))
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw FormatError.badHeader(path: path, reason: "header does not start with '{'")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerBytes, options: [])
        } catch {
            throw FormatError.badHeader(path: path, reason: "header is not valid JSON (\(oneLine(error)))")
        }
        guard let top = json as? [String: Any] else {
            throw FormatError.badHeader(path: path, reason: "header is not a JSON object")
        }
        var metadata = [String: String]()
        var entries = [Entry]()
        entries.reserveCapacity(top.count)
        for (name, value) in top {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw FormatError.badHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw FormatError.badHeader(path: path, reason: "__metadata__ value for \(k) is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let obj = value as? [String: Any] else {
                throw FormatError.badHeader(path: path, reason: "entry for tensor \(name) is not an object")
            }
            guard let dtype = obj["dtype"] as? String else {
                throw FormatError.badHeader(path: path, reason: "tensor \(name) has no string dtype")
            }
            guard let shapeAny = obj["shape"] as? [Any], let shape = nonNegativeInts(shapeAny) else {
                throw FormatError.badHeader(path: path, reason: "tensor \(name) has no shape of non-negative integers")
            }
            guard let offsAny = obj["data_offsets"] as? [Any], let offs = nonNegativeInts(offsAny), offs.count == 2 else {
                throw FormatError.badHeader(path: path, reason: "tensor \(name) has no data_offsets [begin, end]")
            }
            guard let size = safetensorsDTypeSizes[dtype] else {
                throw FormatError.unsupportedDType(path: path, tensor: name, dtype: dtype)
            }
            var count = 1
            for d in shape {
                let (c, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError.shapeMismatch(path: path, tensor: name, reason: "shape \(shape) overflows") }
                count = c
            }
            let (expected, o) = count.multipliedReportingOverflow(by: size)
            let (begin, end) = (offs[0], offs[1])
            guard begin <= end else {
                throw FormatError.badHeader(path: path, reason: "tensor \(name) data_offsets [\(begin), \(end)] are reversed")
            }
            guard end <= dataSize else {
                throw FormatError.tensorOutOfRange(path: path, tensor: name, offset: dataOffset + begin, bytes: end - begin,
                                                   fileSize: file.size)
            }
            guard !o, expected == end - begin else {
                throw FormatError.shapeMismatch(path: path, tensor: name,
                    reason: "shape \(shape) × \(dtype) (\(size) bytes) needs \(o ? "too many" : String(expected)) bytes but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for i in entries.indices.dropFirst() where entries[i].begin < entries[i - 1].end {
            throw FormatError.malformed(path: path,
                reason: "tensors \(entries[i - 1].name) [\(entries[i - 1].begin), \(entries[i - 1].end)] and \(entries[i].name) [\(entries[i].begin), \(entries[i].end)] overlap")
        }
        self.metadata = metadata
        self.entries = entries
        var index = [String: Int](minimumCapacity: entries.count)
        for (i, e) in entries.enumerated() { index[e.name] = i }
        self.index = index
    }

    public var tensorNames: [String] { entries.map(\.name) }
    public var sourceDescription: String { "safetensors \(path) (\(entries.count) tensors)" }
    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }
    public func shape(of name: String) -> [Int]? { entry(name)?.shape }
    public func dtype(of name: String) -> String? { entry(name)?.dtype }

    /// The raw bytes of a tensor (valid while `self` is alive).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let e = entry(name) else { throw FormatError.tensorNotFound(path: path, tensor: name) }
        return try file.slice(offset: dataOffset + e.begin, count: e.end - e.begin, tensor: name)
    }

    public func storageType(of name: String) -> String? { dtype(of: name) }

    public func floats(_ name: String) throws -> [Float] {
        guard let e = entry(name) else { throw FormatError.tensorNotFound(path: path, tensor: name) }
        let n = e.elementCount
        return try [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            initialized = 0
            try readFloats(name, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<n]))
            initialized = n
        }
    }

    public func readFloats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let e = entry(name) else { throw FormatError.tensorNotFound(path: path, tensor: name) }
        guard e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16" else {
            throw FormatError.unsupportedDType(path: path, tensor: name, dtype: e.dtype)
        }
        let n = e.elementCount
        guard out.count == n else {
            throw FormatError.shapeMismatch(path: path, tensor: name, reason: "\(n) values, \(out.count) expected")
        }
        let bytes = try rawBytes(name)
        guard n > 0, let src = bytes.baseAddress, let dst = out.baseAddress else { return }
        let input = SendableRawPointer(src), output = SendablePointer(dst), dtype = e.dtype
        parallelRanges(n) { lo, hi in Self.widen(dtype, input.p, from: lo, to: hi, into: output.p + lo) }
    }

    public func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        guard let e = entry(name) else { throw FormatError.tensorNotFound(path: path, tensor: name) }
        guard e.shape.count == 2, e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16" else {
            throw FormatError.unsupportedDType(path: path, tensor: name, dtype: "\(e.dtype) \(e.shape)")
        }
        let bytes = try rawBytes(name), cols = e.shape[1]
        guard let src = bytes.baseAddress else { return }
        for (i, r) in rows.enumerated() {
            guard r >= 0, r < e.shape[0] else {
                throw FormatError.shapeMismatch(path: path, tensor: name, reason: "row \(r) of \(e.shape[0])")
            }
            Self.widen(e.dtype, src, from: r * cols, to: (r + 1) * cols, into: out + i * cols)
        }
    }

    public func releasePages(of name: String) {
        if let e = entry(name) { file.release(offset: dataOffset + e.begin, count: e.end - e.begin) }
    }

    /// Elements lo..<hi of little-endian `dtype` data at `src`, as Float, into `dst[0..<hi−lo]`.
    static func widen(_ dtype: String, _ src: UnsafeRawPointer, from lo: Int, to hi: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case "F32":
            memcpy(dst, src + 4 * lo, 4 * (hi - lo))
        case "F16":
            for i in lo..<hi {
                dst[i - lo] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        default:
            for i in lo..<hi {
                dst[i - lo] = bfloat16ToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        }
    }
}

/// A checkpoint split over several safetensors files, named by `model.safetensors.index.json`'s `weight_map`.
public final class ShardedSafetensors: TensorSource, @unchecked Sendable {
    public let indexPath: String
    /// The index's `metadata` object, values rendered as strings.
    public let metadata: [String: String]
    /// Shards in file-name order.
    public let shards: [SafetensorsFile]
    public let tensorNames: [String]
    private let shardOf: [String: Int]

    public init(indexPath: String) throws {
        self.indexPath = indexPath
        let file = try MappedFile(path: indexPath)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(file.bytes), options: [])
        } catch {
            throw FormatError.badHeader(path: indexPath, reason: "index is not valid JSON (\(oneLine(error)))")
        }
        guard let top = json as? [String: Any], let map = top["weight_map"] as? [String: Any] else {
            throw FormatError.badHeader(path: indexPath, reason: "index has no weight_map object")
        }
        var meta = [String: String]()
        if let m = top["metadata"] as? [String: Any] {
            for (k, v) in m { meta[k] = "\(v)" }
        }
        metadata = meta
        var files = Set<String>()
        var wanted = [String: String]()
        for (name, f) in map {
            guard let f = f as? String, !f.isEmpty else {
                throw FormatError.badHeader(path: indexPath, reason: "weight_map entry for \(name) is not a file name")
            }
            files.insert(f)
            wanted[name] = f
        }
        let dir = URL(fileURLWithPath: indexPath).deletingLastPathComponent()
        let ordered = files.sorted()
        var shards = [SafetensorsFile]()
        var shardIndex = [String: Int]()
        for (i, f) in ordered.enumerated() {
            let p = f.hasPrefix("/") ? f : dir.appendingPathComponent(f).path
            do {
                shards.append(try SafetensorsFile(path: p))
            } catch FormatError.missingFile(let missing) {
                // Say where the name came from: the user pointed at the index, not at this file.
                throw FormatError.io(path: missing, reason: "no such file (a shard listed in \(indexPath))")
            }
            shardIndex[f] = i
        }
        var shardOf = [String: Int]()
        for (name, f) in wanted {
            guard let i = shardIndex[f] else { continue }
            guard shards[i].entry(name) != nil else {
                throw FormatError.tensorNotFound(path: shards[i].path, tensor: "\(name) (listed in \(indexPath))")
            }
            shardOf[name] = i
        }
        self.shards = shards
        self.shardOf = shardOf
        tensorNames = shards.enumerated().flatMap { i, s in s.entries.map(\.name).filter { shardOf[$0] == i } }
    }

    public var sourceDescription: String {
        "sharded safetensors \(indexPath) (\(shards.count) shards, \(tensorNames.count) tensors)"
    }
    public func shape(of name: String) -> [Int]? { shardOf[name].flatMap { shards[$0].shape(of: name) } }
    public func dtype(of name: String) -> String? { shardOf[name].flatMap { shards[$0].dtype(of: name) } }
    public func storageType(of name: String) -> String? { dtype(of: name) }
    public func floats(_ name: String) throws -> [Float] { try shard(of: name).floats(name) }
    public func readFloats(_ name: String, into out: UnsafeMutableBufferPointer<Float>) throws {
        try shard(of: name).readFloats(name, into: out)
    }
    public func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws {
        try shard(of: name).readRows(name, rows: rows, into: out)
    }
    public func releasePages(of name: String) { shardOf[name].map { shards[$0].releasePages(of: name) } }
    /// The raw bytes of a tensor in its shard (valid while `self` is alive).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer { try shard(of: name).rawBytes(name) }

    private func shard(of name: String) throws -> SafetensorsFile {
        guard let i = shardOf[name] else { throw FormatError.tensorNotFound(path: indexPath, tensor: name) }
        return shards[i]
    }
}

/// Writes F32 safetensors files the way the reference `safetensors` library lays them out: `__metadata__`
/// first, tensors sorted by name (bytewise) with data in the same order, header padded with spaces to a
/// multiple of 8 bytes.
public enum SafetensorsWriter {
    public typealias Tensor = (name: String, shape: [Int], values: [Float])

    /// Writes the file by streaming the header and then each tensor's bytes (no whole-file buffer), through a
    /// temporary sibling renamed into place.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        let (header, order) = try layout(tensors, metadata: metadata, path: url.path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil),
              let fh = FileHandle(forWritingAtPath: tmp.path) else {
            throw FormatError.io(path: tmp.path, reason: "cannot create")
        }
        do {
            try fh.write(contentsOf: header)
            for i in order {
                try tensors[i].values.withUnsafeBytes { b in   // little-endian host
                    if let base = b.baseAddress, b.count > 0 {
                        try fh.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: b.count,
                                                      deallocator: .none))
                    }
                }
            }
            try fh.close()
            guard rename(tmp.path, url.path) == 0 else {
                throw FormatError.io(path: url.path, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? fh.close()
            try? FileManager.default.removeItem(at: tmp)
            if let e = error as? FormatError { throw e }
            throw FormatError.io(path: url.path, reason: "\(error)")
        }
    }

    /// A tensor to stream: its name, shape and dtype ("F32", "F16" or "BF16").
    public struct Spec: Sendable {
        public var name: String
        public var shape: [Int]
        public var dtype: String
        public init(name: String, shape: [Int], dtype: String) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
        }
        public var byteCount: Int { shape.reduce(1, *) * (dtype == "F32" ? 4 : 2) }
    }

    /// Writes a file whose tensors are produced one at a time (`produce(i)` returns spec i's little-endian bytes),
    /// so a model larger than memory can be written: header first, then each tensor in name order.
    public static func stream(_ specs: [Spec], metadata: [String: String] = [:], to url: URL,
                              produce: (Int) throws -> Data) throws {
        let header = try layoutHeader(specs.map { ($0.name, $0.shape, $0.dtype, $0.byteCount) }, metadata: metadata,
                                      path: url.path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil),
              let fh = FileHandle(forWritingAtPath: tmp.path) else {
            throw FormatError.io(path: tmp.path, reason: "cannot create")
        }
        do {
            try fh.write(contentsOf: header.0)
            for i in header.1 {
                let d = try produce(i)
                guard d.count == specs[i].byteCount else {
                    throw FormatError.shapeMismatch(path: url.path, tensor: specs[i].name,
                                                    reason: "\(d.count) bytes produced, \(specs[i].byteCount) expected")
                }
                try fh.write(contentsOf: d)
            }
            try fh.close()
            guard rename(tmp.path, url.path) == 0 else {
                throw FormatError.io(path: url.path, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? fh.close()
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
    }

    /// The whole file in memory (tests, small files).
    public static func serialize(_ tensors: [Tensor], metadata: [String: String] = [:], path: String = "<memory>") throws -> Data {
        let (header, order) = try layout(tensors, metadata: metadata, path: path)
        var out = header
        out.reserveCapacity(header.count + tensors.reduce(0) { $0 + 4 * $1.values.count })
        for i in order { tensors[i].values.withUnsafeBytes { out.append(contentsOf: $0) } }   // little-endian host
        return out
    }

    /// Validates the tensors and returns the 8-byte length + padded JSON header, and the data order (by name).
    static func layout(_ tensors: [Tensor], metadata: [String: String], path: String) throws -> (Data, [Int]) {
        for t in tensors {
            guard t.shape.allSatisfy({ $0 >= 0 }), product(t.shape) == t.values.count else {
                throw FormatError.shapeMismatch(path: path, tensor: t.name,
                    reason: "shape \(t.shape) does not hold \(t.values.count) values")
            }
        }
        return try layoutHeader(tensors.map { ($0.name, $0.shape, "F32", 4 * $0.values.count) }, metadata: metadata,
                                path: path)
    }

    /// The 8-byte length + padded JSON header for (name, shape, dtype, bytes) entries, and the data order (by name).
    static func layoutHeader(_ tensors: [(name: String, shape: [Int], dtype: String, bytes: Int)], metadata: [String: String],
                             path: String) throws -> (Data, [Int]) {
        var seen = Set<String>()
        for t in tensors {
            guard !t.name.isEmpty, t.name != "__metadata__", seen.insert(t.name).inserted else {
                throw FormatError.malformed(path: path, reason: "tensor name \"\(t.name)\" is empty, reserved or repeated")
            }
            guard t.shape.allSatisfy({ $0 >= 0 }), product(t.shape) != nil else {
                throw FormatError.shapeMismatch(path: path, tensor: t.name, reason: "shape \(t.shape) is invalid")
            }
        }
        let order = tensors.indices.sorted { Array(tensors[$0].name.utf8).lexicographicallyPrecedes(Array(tensors[$1].name.utf8)) }
        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
                .map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for i in order {
            let t = tensors[i]
            let bytes = t.bytes
            if !first { header += "," }
            first = false
            header += "\(jsonString(t.name)):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],"
            header += "\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        return (out, order)
    }

    private static func product(_ s: [Int]) -> Int? {
        var c = 1
        for d in s {
            let (v, o) = c.multipliedReportingOverflow(by: d)
            if o { return nil }
            c = v
        }
        return c
    }
}

// MARK: - helpers

private func nonNegativeInts(_ a: [Any]) -> [Int]? {
    var out = [Int]()
    out.reserveCapacity(a.count)
    for v in a {
        let d: Double
        if let i = v as? Int {
            d = Double(i)
        } else if let x = v as? Double {
            d = x
        } else if let n = v as? NSNumber {
            d = n.doubleValue
        } else {
            return nil
        }
        guard d >= 0, d == d.rounded(), d < 9.0e15 else { return nil }
        out.append(Int(d))
    }
    return out
}

private func oneLine(_ error: Error) -> String {
    "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
}

/// Runs `body(lo, hi)` over disjoint ranges covering 0..<n, in parallel when n is large.
func parallelRanges(_ n: Int, _ body: @Sendable (Int, Int) -> Void) {
    let chunks = n < 1 << 16 ? 1 : ProcessInfo.processInfo.activeProcessorCount * 4
    if chunks == 1 { body(0, n); return }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        body(n * c / chunks, n * (c + 1) / chunks)
    }
}
