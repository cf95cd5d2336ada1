import Foundation
import Testing
@testable import Support

@Test func sha256KnownVectors() {
    #expect(SHA256.hex(Data()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(SHA256.hex(Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    let long = Data(repeating: 0x61, count: 1_000)   // crosses several blocks and the padding boundary
    #expect(SHA256.hex(long) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
}

@Test func atomicWriteReplacesAndLeavesNoTemporary() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let f = dir.appendingPathComponent("x.json")
    try AtomicFile.write(Data("one".utf8), to: f)
    try AtomicFile.write(Data("two".utf8), to: f)
    #expect(try String(contentsOf: f, encoding: .utf8) == "two")
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["x.json"])
}

// Foundation reports write failures as Cocoa codes (640 out of space, 513 no permission, 642 read-only volume),
// sometimes with the POSIX code underneath; each becomes one plain line naming the path.
@Test func systemErrorsBecomePlainLines() throws {
    func cocoa(_ code: Int, _ path: String, underlying: Int32? = nil) -> NSError {
        var info: [String: Any] = [NSFilePathErrorKey: path]
        if let underlying { info[NSUnderlyingErrorKey] = NSError(domain: NSPOSIXErrorDomain, code: Int(underlying)) }
        return NSError(domain: NSCocoaErrorDomain, code: code, userInfo: info)
    }
    #expect(SystemError.from(cocoa(640, "/full/x"))?.description == "no space left on device: /full/x")
    #expect(SystemError.from(cocoa(513, "/locked/x"))?.description == "permission denied: /locked/x")
    #expect(SystemError.from(cocoa(642, "/ro/x"))?.description == "read-only file system: /ro/x")
    // The POSIX code underneath wins over the Cocoa one; a path given names the file the user asked for.
    #expect(SystemError.from(cocoa(512, "/d/.x.tmp-1", underlying: EROFS), path: "/d/x")?.description == "read-only file system: /d/x")
    #expect(SystemError.from(NSError(domain: NSPOSIXErrorDomain, code: Int(ENOSPC)), path: "/d/y") == SystemError(code: ENOSPC, path: "/d/y"))
    // Not a file-system error, or no path to name: left alone.
    #expect(SystemError.from(NSError(domain: "other", code: 640)) == nil)
    #expect(SystemError.from(NSError(domain: NSCocoaErrorDomain, code: 640)) == nil)
}

@Test func atomicWriteNamesTheFileNotItsTemporary() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-missing-\(UUID().uuidString)")
    let target = dir.appendingPathComponent("out.bin")        // its directory does not exist
    do {
        try AtomicFile.write(Data([1, 2, 3]), to: target)
        Issue.record("wrote into a missing directory")
    } catch let e as SystemError {
        #expect(e == SystemError(code: ENOENT, path: target.path))
    }
}
