// The ids the post-processor adds around a text (e.g. BOS before it), for callers that truncate as HF does:
// the text's tokens are cut and these kept.
extension BPETokenizer {
    public var specialPrefixIds: [Int32] { prefixIds }
    public var specialSuffixIds: [Int32] { suffixIds }
}
