// Vectorised exp and row reductions over SIMD8<Float>. Scalar libm exp dominated the SwiGLU, softmax and
// NLL rows (≈10⁸ calls per forward of a 1024-token batch); this polynomial exp is accurate to ~2 ulp over
// the float range and lets the compiler keep 4- or 8-wide registers busy.
public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// e^x for each lane (Cephes-style: 2^k · p(r), r = x − k·ln2, |r| ≤ ln2/2, degree-6 polynomial).
    /// Rounding and the float→int step use the 1.5·2²³ magic-number trick and the clamp uses lane masks:
    /// the generic SIMD conversions (`rounded`, `SIMD8<Int32>(_:rounding:)`) lower to per-lane code, 15× slower.
    @inline(__always)
    public static func exp(_ x: V) -> V {
        var cx = x
        cx.replace(with: V(repeating: 88.37626), where: x .> 88.37626)
        cx.replace(with: V(repeating: -87.33654), where: x .< -87.33654)
        let magic = V(repeating: 12_582_912)               // 1.5 · 2²³: adding it rounds to an integer
        let t = cx * 1.442695041 + magic
        let k = t - magic
        var r = cx - k * 0.693359375
        r = r - k * -2.12194440e-4
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        p = p * (r * r) + r + 1
        let ki = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        return p * unsafeBitCast((ki &+ 127) &<< 23, to: V.self)
    }

    @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(V(repeating: x))[0] }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// Σ a[i]·b[i] over n floats: four 8-lane partial sums, added pairwise, then the tail.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = V(), s1 = V(), s2 = V(), s3 = V()
        var i = 0
        while i + 32 <= n {
            s0 += load(a + i) * load(b + i)
            s1 += load(a + i + 8) * load(b + i + 8)
            s2 += load(a + i + 16) * load(b + i + 16)
            s3 += load(a + i + 24) * load(b + i + 24)
            i += 32
        }
        while i + 8 <= n {
            s0 += load(a + i) * load(b + i)
            i += 8
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    /// max over x[0..<n].
    public static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = V(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { m = pointwiseMax(m, load(x + i)); i += 8 }
        var s = m.max()
        while i < n { s = Swift.max(s, x[i]); i += 1 }
        return s
    }

    /// Σ x[i]² over x[0..<n].
    public static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V.zero
        var i = 0
        while i + 8 <= n { let v = load(x + i); acc += v * v; i += 8 }
        var s = acc.sum()
        while i < n { s += x[i] * x[i]; i += 1 }
        return s
    }

    /// Σ exp(x[i] − shift) over x[0..<n].
    public static func sumExp(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = V.zero
        let sh = V(repeating: shift)
        var i = 0
        while i + 8 <= n { acc += exp(load(x + i) - sh); i += 8 }
        var s = acc.sum()
        while i < n { s += exp(x[i] - shift); i += 1 }
        return s
    }

    /// x[i] = exp(x[i] − shift) in place; returns the sum.
    public static func expInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = V.zero
        let sh = V(repeating: shift)
        var i = 0
        while i + 8 <= n { let e = exp(load(x + i) - sh); store(e, x + i); acc += e; i += 8 }
        var s = acc.sum()
        while i < n { let e = exp(x[i] - shift); x[i] = e; s += e; i += 1 }
        return s
    }

    /// y[i] = x[i] · a (y may alias x).
    public static func scale(_ x: UnsafePointer<Float>, _ a: Float, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let av = V(repeating: a)
        while i + 8 <= n { store(load(x + i) * av, y + i); i += 8 }
        while i < n { y[i] = x[i] * a; i += 1 }
    }

    /// y[i] = x[i] · a · w[i].
    public static func scaleMul(_ x: UnsafePointer<Float>, _ a: Float, _ w: UnsafePointer<Float>,
                                _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let av = V(repeating: a)
        while i + 8 <= n { store(load(w + i) * (load(x + i) * av), y + i); i += 8 }
        while i < n { y[i] = w[i] * (x[i] * a); i += 1 }
    }

    /// o[i] = silu(g[i]) · u[i] = g / (1 + e^−g) · u.
    public static func swiglu(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            let x = load(g + i)
            store(x / (1 + exp(-x)) * load(u + i), o + i)
            i += 8
        }
        while i < n { let x = g[i]; o[i] = x / (1 + exp(-x)) * u[i]; i += 1 }
    }
}
