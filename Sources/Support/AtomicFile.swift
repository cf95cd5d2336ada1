// Writes that never leave partial output: data goes to a temporary sibling, then is renamed into place.
import Foundation

public enum AtomicFile {
    /// Writes `data` to `url` through a temporary file in the same directory, then renames it. A file-system
    /// failure is a `SystemError` naming `url` (not the temporary file the user never asked for).
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try data.write(to: tmp)
            if rename(tmp.path, url.path) != 0 { throw SystemError(code: errno, path: url.path) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw SystemError.from(error, path: url.path) ?? error
        }
    }
}

public enum SupportError: Error, CustomStringConvertible {
    case io(path: String, reason: String)
    public var description: String {
        switch self {
        case .io(let path, let reason): return "\(path): \(reason)"
        }
    }
}
