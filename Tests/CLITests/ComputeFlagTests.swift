// --compute bf16 where the CPU has no AVX512-BF16: refused with one line naming the flag, before any work, by
// tune, eval and generate. Such a CPU is emulated by capping oneDNN's ISA (ONEDNN_MAX_CPU_ISA, oneDNN's CPU
// dispatcher control): AVX512_CORE is Skylake-SP/Cascade Lake/Ice Lake, where oneDNN 2.6 would otherwise run an
// emulated bf16 at ~0.37× fp32 (docs/bf16.md); AVX2 has no bf16 matmul at all.
import Foundation
import Testing

@Suite struct ComputeFlagTests {
    static let tiny = fixtures.appendingPathComponent("tiny.gguf").path
    static let alpaca = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/alpaca/alpaca_data_1k.json").path

    static func commands(_ s: Scratch) -> [[String]] {
        [["eval", "--model", tiny, "--dataset", "wikitext2", "--max-windows", "1"],
         ["generate", "--model", tiny, "--prompt", "hello", "--max-new-tokens", "2"],
         ["tune", "--model", tiny, "--data", alpaca, "--out", s.url.appendingPathComponent("adapter").path, "--steps", "1"]]
    }

    @Test(arguments: ["AVX512_CORE", "AVX2"])
    func bf16RefusedWithoutAVX512BF16(isa: String) throws {
        let s = Scratch()
        for cmd in Self.commands(s) {
            let r = try run(llmpruneBinary().path, cmd + ["--compute", "bf16", "--quiet"], env: ["ONEDNN_MAX_CPU_ISA": isa])
            expectCleanFailure(r, mentions: ["--compute bf16", "AVX512-BF16", isa.lowercased()])
            #expect(r.stdout.isEmpty, "\(cmd[0]) printed: \(r.stdout)")
        }
        #expect(!FileManager.default.fileExists(atPath: s.url.appendingPathComponent("adapter").path))
    }

    @Test func unknownComputeRefused() throws {
        let s = Scratch()
        for cmd in Self.commands(s) {
            expectCleanFailure(try llmprune(cmd + ["--compute", "fp16"]), mentions: ["--compute", "fp16"])
        }
    }
}
