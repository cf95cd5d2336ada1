// Evaluation texts and the project's text protocol. The shared files hold one non-empty row per line; the
// reference joins dataset rows with "\n\n" and tokenizes the result once, so we do the same: lines split on
// "\n", empty lines dropped, joined with "\n\n". scripts/reference/common.py implements the same rule.
import Foundation

public enum EvalError: Error, CustomStringConvertible {
    case unknownDataset(String)
    case unreadable(path: String, reason: String)
    case invalidOption(flag: String, reason: String)
    case tooShort(path: String, tokens: Int, needed: Int)

    public var description: String {
        switch self {
        case .unknownDataset(let n):
            return "--dataset: unknown dataset \"\(n)\" (use wikitext2, ptb, ptb-valid or a path to a text file)"
        case .unreadable(let p, let r): return "\(p): \(r)"
        case .invalidOption(let f, let r): return "\(f): \(r)"
        case .tooShort(let p, let t, let n): return "\(p): \(t) tokens, fewer than one window of \(n)"
        }
    }
}

public enum EvalDataset {
    /// Files of the named datasets, relative to the shared data directory.
    public static let named: [String: String] = [
        "wikitext2": "wikitext-2-raw/wiki.test.raw",
        "ptb": "ptb/ptb.test.txt",
        "ptb-valid": "ptb/ptb.valid.txt",
    ]

    /// The shared data directory: `$LLMPRUNE_DATA`, else the first `shared/data` found walking up from the
    /// working directory (the repository sits beside `shared/`).
    public static func dataDirectory() -> URL? {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["LLMPRUNE_DATA"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        var dir = URL(fileURLWithPath: fm.currentDirectoryPath)
        for _ in 0..<6 {
            let cand = dir.appendingPathComponent("shared/data")
            if fm.fileExists(atPath: cand.path) { return cand }
            dir.deleteLastPathComponent()
        }
        return nil
    }

    /// Resolves a dataset name or a file path to a readable file.
    public static func resolve(_ nameOrPath: String) throws -> URL {
        if let rel = named[nameOrPath] {
            guard let root = dataDirectory() else {
                throw EvalError.unreadable(path: nameOrPath,
                                           reason: "shared data directory not found (set LLMPRUNE_DATA)")
            }
            let url = root.appendingPathComponent(rel)
            guard FileManager.default.isReadableFile(atPath: url.path) else {
                throw EvalError.unreadable(path: url.path, reason: "dataset file not found")
            }
            return url
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: nameOrPath, isDirectory: &isDir), !isDir.boolValue else {
            throw EvalError.unknownDataset(nameOrPath)
        }
        return URL(fileURLWithPath: nameOrPath)
    }

    /// The text of a dataset file under the project protocol (non-empty lines joined with "\n\n").
    public static func text(of url: URL) throws -> String {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw EvalError.unreadable(path: url.path, reason: "cannot read file")
        }
        guard String(data: data, encoding: .utf8) != nil else {
            throw EvalError.unreadable(path: url.path, reason: "not valid UTF-8")
        }
        // Split on the byte 0x0A exactly as Python's str.split("\n") does (a Swift Character split would
        // treat "\r\n" as one separator-less grapheme).
        var out = [UInt8]()
        out.reserveCapacity(data.count + data.count / 8)
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: true) {
            if !out.isEmpty { out.append(0x0A); out.append(0x0A) }
            out.append(contentsOf: line)
        }
        return String(decoding: out, as: UTF8.self)
    }
}
