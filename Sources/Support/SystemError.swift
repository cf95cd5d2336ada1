// File-system failures as one plain line naming the path ("no space left on device: /out/model.safetensors"),
// instead of Foundation's `Error Domain=NSCocoaErrorDomain Code=640 … UserInfo={…}`. Foundation reports the
// POSIX errors of a write (ENOSPC, EACCES, EROFS …) as Cocoa codes, the POSIX code sometimes only in the
// underlying error; both are recognised here.
import Foundation

public struct SystemError: Error, CustomStringConvertible, Equatable {
    /// The POSIX code (ENOSPC, EACCES, EROFS, …).
    public var code: Int32
    public var path: String

    public init(code: Int32, path: String) {
        self.code = code
        self.path = path
    }

    public var description: String { oneLineMessage("\(Self.text(code)): \(path)") }

    /// Lower-case text of the codes users meet; strerror for the rest.
    static func text(_ code: Int32) -> String {
        switch code {
        case ENOSPC: return "no space left on device"
        case EDQUOT: return "disk quota exceeded"
        case EACCES, EPERM: return "permission denied"
        case EROFS: return "read-only file system"
        case ENOENT: return "no such file or directory"
        case EEXIST: return "file exists"
        case EISDIR: return "is a directory"
        case ENOTDIR: return "not a directory"
        case EMFILE, ENFILE: return "too many open files"
        case EIO: return "input/output error"
        default: return String(cString: strerror(code))
        }
    }

    /// The Cocoa file-error codes Foundation produces, as POSIX codes.
    static let cocoaCodes: [Int: Int32] = [
        640: ENOSPC,    // NSFileWriteOutOfSpaceError
        513: EACCES,    // NSFileWriteNoPermissionError
        642: EROFS,     // NSFileWriteVolumeReadOnlyError
        257: EACCES,    // NSFileReadNoPermissionError
        4: ENOENT,      // NSFileNoSuchFileError
        260: ENOENT,    // NSFileReadNoSuchFileError
        516: EEXIST,    // NSFileWriteFileExistsError
    ]

    /// `error` as a `SystemError` when it is a file-system failure Foundation or POSIX reported; `path` names the
    /// file when the error itself does not (or names a temporary sibling of it).
    public static func from(_ error: Error, path: String? = nil) -> SystemError? {
        if let e = error as? SystemError { return path.map { SystemError(code: e.code, path: $0) } ?? e }
        let ns = error as NSError
        var code: Int32? = nil
        if ns.domain == NSPOSIXErrorDomain { code = Int32(ns.code) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            code = Int32(underlying.code)
        }
        if code == nil, ns.domain == NSCocoaErrorDomain { code = cocoaCodes[ns.code] }
        guard let code else { return nil }
        let named = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        guard let p = path ?? named else { return nil }
        return SystemError(code: code, path: p)
    }
}
