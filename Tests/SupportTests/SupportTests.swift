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
