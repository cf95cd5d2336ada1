// A whole file mapped read-only with POSIX mmap, plus a bounds-checked little-endian cursor over it. Every read
// of untrusted bytes in this module goes through `ByteReader` or `MappedFile.slice`, which throw instead of
// reading past the end.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of one file, unmapped when the object goes away. The bytes never change for the
/// object's life (MAP_PRIVATE + PROT_READ), so sharing across threads is safe.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO named by a file (e.g. a shard in a safetensors index) must not block the open.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let e = errno
            if e == ENOENT { throw FormatError.missingFile(path: path) }
            throw FormatError.io(path: path, reason: "cannot open: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw FormatError.io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw FormatError.io(path: path, reason: "is a directory, not a file")
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw FormatError.io(path: path, reason: "is not a regular file (a device, FIFO or socket)")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError.io(path: path, reason: "cannot mmap \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// All bytes of the file. Valid while `self` is alive.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: size)
    }

    /// Drops the pages of `[offset, offset+count)` from this process's resident set (madvise MADV_DONTNEED). The
    /// mapping is private and never written, so a later read faults the same bytes back in from the file; a reader that
    /// streams a large checkpoint once calls this after each tensor, so its resident memory stays at one tensor.
    public func release(offset: Int, count: Int) {
        guard let base, count > 0, offset >= 0, offset < size else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = offset / page * page, hi = min(size, offset + count)
        _ = madvise(base + lo, hi - lo, MADV_DONTNEED)
    }

    /// Bytes `[offset, offset+count)` of tensor `tensor`, or `tensorOutOfRange`.
    func slice(offset: Int, count: Int, tensor: String) throws -> UnsafeRawBufferPointer {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw FormatError.tensorOutOfRange(path: path, tensor: tensor, offset: offset, bytes: count, fileSize: size)
        }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }
}

/// A forward cursor over untrusted little-endian bytes.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset: Int = 0

    init(_ bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - offset }

    @inline(__always)
    func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        if n < 0 || n > remaining {
            throw FormatError.truncated(path: path, what: what(), offset: offset, need: n, fileSize: bytes.count)
        }
    }

    @inline(__always)
    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    /// A count stored as UInt64 whose `count * unit` bytes must still be in the file (so a corrupt count can
    /// never make us reserve absurd memory).
    mutating func readCount(_ what: @autoclosure () -> String, unit: Int) throws -> Int {
        let start = offset
        let raw = try read(UInt64.self, what())
        let (bytesNeeded, overflow) = raw.multipliedReportingOverflow(by: UInt64(max(unit, 0)))
        if raw > UInt64(Int.max) || overflow || bytesNeeded > UInt64(remaining) {
            let need = overflow || bytesNeeded > UInt64(Int.max) ? Int.max : Int(bytesNeeded)
            throw FormatError.truncated(path: path, what: "\(what()) = \(raw)", offset: start + 8, need: need,
                                        fileSize: bytes.count)
        }
        return Int(raw)
    }

    mutating func readString(_ what: @autoclosure () -> String) throws -> String {
        let n = try readCount("length of \(what())", unit: 1)
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]), as: UTF8.self)
        offset += n
        return s
    }
}
