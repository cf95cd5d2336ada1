// Per-channel salience sums over the rows or columns of a row-major matrix, specialised per criterion.
import Foundation

protocol SalienceOp {
    /// Salience contribution of one element (already |·| unless `signed`).
    static func element(_ w: Double, _ g: Double, _ f: Double) -> Double
    /// True when the sum is signed and its abs is taken afterwards (`vector`).
    static var signed: Bool { get }
}

enum Element1Op: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { abs(w * g) }
    static var signed: Bool { false }
}
enum Element2Op: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { abs(w * g - 0.5 * w * f * w) }
    static var signed: Bool { false }
}
enum ParamSecondOp: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { abs(w * f * w) }
    static var signed: Bool { false }
}
enum VectorOp: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { w * g }
    static var signed: Bool { true }
}
enum L1Op: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { abs(w) }
    static var signed: Bool { false }
}
enum L2Op: SalienceOp {
    @inline(__always) static func element(_ w: Double, _ g: Double, _ f: Double) -> Double { w * w }
    static var signed: Bool { false }
}

extension Importance {
    /// out[c] = Σ over the other dimension of S for each row c (`byRow`) or column c of the [rows × cols] matrix.
    /// `g`/`f` are nil when the criterion does not read them. A row's bias element, when `bias` holds one per row
    /// (`byRow` only; empty: none), is one more element of that row's sum (before the abs of `vector`).
    static func channelSums(_ criterion: Criterion, _ w: [Float], _ g: [Float]?, _ f: [Float]?,
                            rows: Int, cols: Int, byRow: Bool, bias: BiasSalience = .none, into out: inout [Double]) {
        switch criterion {
        case .element1: channelSums(Element1Op.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .element2: channelSums(Element2Op.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .paramSecond: channelSums(ParamSecondOp.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .vector: channelSums(VectorOp.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .l1: channelSums(L1Op.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .l2: channelSums(L2Op.self, w, g, f, rows: rows, cols: cols, byRow: byRow, bias: bias, into: &out)
        case .random, .fluctuation, .obs: break
        }
    }

    /// A product's bias with its gradient and Fisher diagonal (nil when the criterion does not read them).
    struct BiasSalience {
        var w: [Float], g: [Float]?, f: [Float]?
        static let none = BiasSalience(w: [], g: nil, f: nil)
    }

    static func channelSums<Op: SalienceOp>(_ op: Op.Type, _ w: [Float], _ g: [Float]?, _ f: [Float]?,
                                            rows: Int, cols: Int, byRow: Bool, bias: BiasSalience = .none,
                                            into out: inout [Double]) {
        let channels = byRow ? rows : cols
        precondition(out.count == channels && w.count == rows * cols)
        precondition(bias.w.isEmpty || (byRow && bias.w.count == rows))
        let hasBias = !bias.w.isEmpty
        // Absent g/F are never read by the ops that lack them; alias W (or b) so the pointers are valid.
        let gArr = g ?? w, fArr = f ?? w
        let bw = hasBias ? bias.w : [0], bg = hasBias ? (bias.g ?? bias.w) : [0], bf = hasBias ? (bias.f ?? bias.w) : [0]
        let total = rows * cols
        let workers = ProcessInfo.processInfo.activeProcessorCount
        let chunks = total < 1 << 16 ? 1 : min(channels, workers * 4)
        bw.withUnsafeBufferPointer { bwb in bg.withUnsafeBufferPointer { bgb in bf.withUnsafeBufferPointer { bfb in
        w.withUnsafeBufferPointer { wb in gArr.withUnsafeBufferPointer { gb in fArr.withUnsafeBufferPointer { fb in
            out.withUnsafeMutableBufferPointer { ob in
                let bwp = bwb.baseAddress!, bgp = bgb.baseAddress!, bfp = bfb.baseAddress!
                let wp = wb.baseAddress!, gp = gb.baseAddress!, fp = fb.baseAddress!, op = ob.baseAddress!
                let body = { (chunk: Int) in
                    let c0 = chunk * channels / chunks, c1 = (chunk + 1) * channels / chunks
                    if byRow {
                        for r in c0..<c1 {
                            let base = r * cols
                            var acc = 0.0
                            for c in 0..<cols {
                                acc += Op.element(Double(wp[base + c]), Double(gp[base + c]), Double(fp[base + c]))
                            }
                            if hasBias { acc += Op.element(Double(bwp[r]), Double(bgp[r]), Double(bfp[r])) }
                            op[r] = Op.signed ? abs(acc) : acc
                        }
                    } else {
                        for c in c0..<c1 { op[c] = 0 }
                        for r in 0..<rows {
                            let base = r * cols
                            for c in c0..<c1 {
                                op[c] += Op.element(Double(wp[base + c]), Double(gp[base + c]), Double(fp[base + c]))
                            }
                        }
                        if Op.signed { for c in c0..<c1 { op[c] = abs(op[c]) } }
                    }
                }
                if chunks == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: chunks, execute: body) }
            }
        } } }
        } } }
    }
}
