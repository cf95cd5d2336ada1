// libFuzzer target: PrunePlan.decode(_:source:) on arbitrary bytes, then the plan's derived config against the
// model it names (prunedConfig over the plan's own recorded layer shapes).
import Foundation
import LlamaModel
import Pruning

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlan(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    let path = "/fuzz/plan.json"
    do {
        let p = try PrunePlan.decode(Data(bytes: data, count: size), source: path)
        let m = p.model
        if !m.layers.isEmpty {
            let c = LlamaConfig(vocabSize: m.vocabSize, hiddenSize: m.hiddenSize, headDim: m.headDim, layers: m.layers,
                                rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 2048, tieWordEmbeddings: true)
            if (try? c.validate(source: path)) != nil { _ = try p.prunedConfig(c) }
        }
    } catch {
        checkError(error, paths: [path])
    }
    return 0
}
