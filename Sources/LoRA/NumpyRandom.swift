// numpy's default_rng(seed).permutation(n), bit for bit: SeedSequence(seed) → PCG64 (XSL-RR 128/64) →
// Fisher–Yates with masked rejection sampling (random_interval, 32-bit draws buffered in halves). This is how
// HF datasets' train_test_split(shuffle=True, seed=42) picks the reference's validation records.
import Foundation

public struct NumpyRandom {
    private var state: UInt128
    private let inc: UInt128
    private var buffered: UInt32?

    static let multiplier: UInt128 = (UInt128(0x2360_ED05_1FC6_5DA4) << 64) | UInt128(0x4385_DF64_9FCC_F645)

    /// np.random.default_rng(seed) for a non-negative integer seed.
    public init(seed: UInt64) {
        let words = Self.seedSequenceState(entropy: seed, words: 8)
        func u64(_ i: Int) -> UInt64 { UInt64(words[2 * i]) | UInt64(words[2 * i + 1]) << 32 }
        let initState = UInt128(u64(0)) << 64 | UInt128(u64(1))
        let initSeq = UInt128(u64(2)) << 64 | UInt128(u64(3))
        inc = initSeq << 1 | 1
        state = 0
        advance()
        state &+= initState
        advance()
    }

    private mutating func advance() { state = state &* Self.multiplier &+ inc }

    public mutating func next64() -> UInt64 {
        advance()
        let hi = UInt64(truncatingIfNeeded: state >> 64), lo = UInt64(truncatingIfNeeded: state)
        let rot = UInt64(truncatingIfNeeded: state >> 122)
        let x = hi ^ lo
        return (x >> rot) | (x << ((64 &- rot) & 63))
    }

    public mutating func next32() -> UInt32 {
        if let b = buffered { buffered = nil; return b }
        let x = next64()
        buffered = UInt32(truncatingIfNeeded: x >> 32)
        return UInt32(truncatingIfNeeded: x)
    }

    /// Uniform in 0...max by masked rejection (numpy random_interval).
    public mutating func interval(_ max: UInt64) -> UInt64 {
        guard max > 0 else { return 0 }
        var mask = max
        for s in [1, 2, 4, 8, 16, 32] as [UInt64] { mask |= mask >> s }
        if max <= 0xFFFF_FFFF {
            while true { let v = UInt64(next32()) & mask; if v <= max { return v } }
        }
        while true { let v = next64() & mask; if v <= max { return v } }
    }

    /// Generator.permutation(n): shuffle of 0..<n from the last position down.
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        var i = n - 1
        while i >= 1 {
            let j = Int(interval(UInt64(i)))
            a.swapAt(i, j)
            i -= 1
        }
        return a
    }

    /// SeedSequence(entropy).generate_state(words, uint32) with numpy's default pool size 4.
    static func seedSequenceState(entropy: UInt64, words n: Int) -> [UInt32] {
        let initA: UInt32 = 0x43B0_D7E5, multA: UInt32 = 0x931E_8875
        let initB: UInt32 = 0x8B51_F9DD, multB: UInt32 = 0x58F3_8DED
        let mixL: UInt32 = 0xCA01_F9DD, mixR: UInt32 = 0x4973_F715
        var entropyWords: [UInt32] = [UInt32(truncatingIfNeeded: entropy)]
        if entropy >> 32 != 0 { entropyWords.append(UInt32(truncatingIfNeeded: entropy >> 32)) }
        var hashConst = initA
        func hashmix(_ v: UInt32) -> UInt32 {
            var value = v ^ hashConst
            hashConst = hashConst &* multA
            value = value &* hashConst
            return value ^ (value >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let r = mixL &* x &- mixR &* y
            return r ^ (r >> 16)
        }
        var pool = [UInt32](repeating: 0, count: 4)
        for i in 0..<4 { pool[i] = hashmix(i < entropyWords.count ? entropyWords[i] : 0) }
        for src in 0..<4 {
            for dst in 0..<4 where src != dst { pool[dst] = mix(pool[dst], hashmix(pool[src])) }
        }
        for src in 4..<max(4, entropyWords.count) {
            for dst in 0..<4 { pool[dst] = mix(pool[dst], hashmix(entropyWords[src])) }
        }
        var out = [UInt32](repeating: 0, count: n)
        var h = initB
        for i in 0..<n {
            var v = pool[i % 4] ^ h
            h = h &* multB
            v = v &* h
            out[i] = v ^ (v >> 16)
        }
        return out
    }
}
