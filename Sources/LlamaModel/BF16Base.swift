// The frozen base's products in bf16 (`--compute bf16`): every layer's four products and the LM head, packed once
// from the fp32 weights into oneDNN's bf16 layouts (TensorCore/BF16Matmul.swift). Passes that never change the
// base — the LoRA pass, the eval forward, generation — hand one to their TransformerBlock; the products then round
// their inputs to bf16 and accumulate in fp32 (as torch's CPU autocast does through oneDNN, but keeping the fp32
// output). Norms, attention, the softmax and loss, the adapters and the optimizer stay fp32. The fp32 weights are
// kept as well: the packed copies add 2 bytes per weight per direction.
import TensorCore

/// A model's frozen weights packed for bf16 products: forward (Y = X·Wᵀ) and, when packed `backward`, the input
/// gradient (dX = dY·W) of each layer product and of the LM head (lm_head, or the tied embedding).
public final class BF16Base {
    struct Weight {
        let forward: BF16Matmul
        let backward: BF16Matmul?
    }
    let layers: [[Weight]]     // [layer][Projection.rawValue]
    let head: Weight
    /// Bytes of the packed bf16 copies.
    public let bytes: Int

    /// The packed base for `compute`: nil for fp32; for bf16, throws `ComputeUnavailable` when this CPU cannot run
    /// bf16 products natively (no silent fallback to an emulated bf16 slower than fp32). `backward` packs the
    /// input-gradient layouts too (training).
    public static func make(_ w: LlamaWeights, compute: ComputeType, backward: Bool) throws -> BF16Base? {
        switch compute {
        case .fp32: return nil
        case .bf16:
            try BF16.requireNative()
            return BF16Base(w, backward: backward)
        }
    }

    init(_ w: LlamaWeights, backward: Bool) {
        let c = w.config, d = c.hiddenSize, hd = c.headDim
        func pack(_ weight: [Float], out: Int, k: Int) -> Weight {
            precondition(weight.count == out * k, "BF16Base: a weight of \(weight.count) values is not \(out)×\(k)")
            return weight.withUnsafeBufferPointer { p in
                Weight(forward: BF16Matmul(p.baseAddress!, k: k, n: out, transposed: true),
                       backward: backward ? BF16Matmul(p.baseAddress!, k: out, n: k, transposed: false) : nil)
            }
        }
        layers = w.layers.map { lw in
            let s = lw.shape, width = (s.numHeads + 2 * s.numKVHeads) * hd, inter = s.intermediateSize
            return Projection.allCases.map { p in
                switch p {
                case .qkv: pack(lw.wqkv, out: width, k: d)
                case .o: pack(lw.wo, out: d, k: s.numHeads * hd)
                case .gateUp: pack(lw.wGateUp, out: 2 * inter, k: d)
                case .down: pack(lw.wDown, out: d, k: inter)
                }
            }
        }
        head = pack(w.lmHead ?? w.embed, out: c.vocabSize, k: d)
        bytes = (layers.flatMap { $0 } + [head]).reduce(0) { $0 + $1.forward.bytes + ($1.backward?.bytes ?? 0) }
    }

    func product(_ p: Projection, layer l: Int) -> Weight { layers[l][p.rawValue] }
}
