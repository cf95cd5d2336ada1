// Writes that never leave partial output: data goes to a temporary sibling, then is renamed into place.
import Foundation

public enum AtomicFile {
    /// Writes `data` to `url` through a temporary file in the same directory, then renames it.
    public static func write(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        do {
            try data.write(to: tmp)
            if rename(tmp.path, url.path) != 0 {
                throw SupportError.io(path: url.path, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error
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
