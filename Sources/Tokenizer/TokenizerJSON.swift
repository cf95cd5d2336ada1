// Loading a Hugging Face `tokenizer.json`: a BPE model (vocab + merges, merges as "a b" or ["a", "b"]),
// pre-tokenizers ByteLevel / Split / Digits / Sequence, added tokens, post-processors TemplateProcessing /
// ByteLevel / Roberta / Bert / Sequence, decoder ByteLevel. Anything else is refused with a clear error
// rather than tokenized differently from HF.
import Foundation

extension BPETokenizer {
    /// Reads `tokenizer.json` and, when present beside it, `tokenizer_config.json` (see `tokenizerConfigData`).
    public convenience init(tokenizerJSON url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError.io(path: url.path, reason: (error as NSError).localizedDescription)
        }
        let cfgURL = url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        let cfg = FileManager.default.contents(atPath: cfgURL.path)
        do { try self.init(tokenizerJSONData: data, tokenizerConfigData: cfg) } catch let e as TokenizerError {
            throw e.in(url.path)
        }
    }

    /// `tokenizerConfigData` (tokenizer_config.json) matters in two ways, as in transformers 5:
    /// - `tokenizer_class` "LlamaTokenizer"/"LlamaTokenizerFast" rebuilds the SentencePiece pipeline the way that
    ///   class does: no normalizer, Metaspace(prepend_scheme "first" -- "always" with `legacy: true`, "never"
    ///   with `add_prefix_space: false` --, split false), decoder Replace/ByteFallback/Fuse(/Strip), whatever
    ///   tokenizer.json says (a Llama-2 tokenizer.json with the older Prepend+Replace normalizer is encoded as
    ///   Metaspace "first" by AutoTokenizer);
    /// - the BOS/EOS ids fall back to its `bos_token` / `eos_token`.
    public convenience init(tokenizerJSONData data: Data, tokenizerConfigData: Data? = nil) throws {
        var config: JSONValue? = nil
        if let c = tokenizerConfigData {
            do { config = try JSONValue.parse(c) } catch { throw TokenizerError.malformed("tokenizer_config.json is not JSON") }
        }
        let root = try JSONValue.parse(data)
        guard root.members != nil else { throw TokenizerError.malformed("top level is not an object") }

        // model
        guard let m = root["model"], m.members != nil else { throw TokenizerError.malformed("missing \"model\" object") }
        let type = m["type"]?.string ?? (m["merges"] != nil ? "BPE" : "")
        guard type == "BPE" else {
            throw TokenizerError.unsupported("model type \(type.isEmpty ? "(none)" : type) (only BPE)")
        }
        guard let vraw = m["vocab"]?.members else { throw TokenizerError.malformed("model.vocab is not an object") }
        var vocab = [TokenKey: Int32](minimumCapacity: vraw.count)
        for (t, v) in vraw {
            guard let i = v.int32, i >= 0 else { throw TokenizerError.malformed("model.vocab[\(t.debugDescription)] is not a token id") }
            vocab[TokenKey(t)] = i
        }
        guard let mraw = m["merges"]?.array else { throw TokenizerError.malformed("model.merges is not an array") }
        var pairs = [(String, String)]()
        pairs.reserveCapacity(mraw.count)
        for (i, e) in mraw.enumerated() {
            if let s = e.string {
                let parts = splitMerge(s)
                guard parts.count == 2 else {
                    throw TokenizerError.badMerge(index: i, reason: "\(s.debugDescription) is not two space-separated tokens")
                }
                pairs.append((parts[0], parts[1]))
            } else if let a = e.array, a.count == 2, let l = a[0].string, let r = a[1].string {
                pairs.append((l, r))
            } else {
                throw TokenizerError.badMerge(index: i, reason: "entry is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        if let x = m["dropout"]?.number, x > 0 { throw TokenizerError.unsupported("BPE dropout \(x)") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = m[key]?.string, !s.isEmpty { throw TokenizerError.unsupported("BPE \(key) \(s.debugDescription)") }
        }
        var model = try BPEModel(vocab: vocab, merges: pairs, unkToken: m["unk_token"]?.string)
        model.fuseUnk = m["fuse_unk"].bool()
        model.ignoreMerges = m["ignore_merges"].bool()
        if m["byte_fallback"].bool() { model.enableByteFallback() }

        // added tokens
        var added = [AddedToken]()
        if let a = root["added_tokens"], !a.isNull {
            guard let arr = a.array else { throw TokenizerError.malformed("added_tokens is not an array") }
            for (i, t) in arr.enumerated() {
                guard let content = t["content"]?.string, let id = t["id"]?.int32, id >= 0 else {
                    throw TokenizerError.malformed("added_tokens[\(i)] lacks content or id")
                }
                let special = t["special"].bool()
                added.append(AddedToken(content: Array(content.unicodeScalars), id: id, special: special,
                                        normalized: t["normalized"].bool(default: !special),
                                        lstrip: t["lstrip"].bool(), rstrip: t["rstrip"].bool(),
                                        singleWord: t["single_word"].bool()))
            }
        }
        let addedIds = Dictionary(added.map { (TokenKey(String(String.UnicodeScalarView($0.content))), $0.id) },
                                  uniquingKeysWith: { a, _ in a })
        func addedOrVocabId(_ token: String) -> Int32? { addedIds[TokenKey(token)] ?? vocab[TokenKey(token)] }

        // normalizer: none, or Prepend / Replace(String) / Sequence of them
        var normalizer = [NormalizerStep]()
        if let n = root["normalizer"], !n.isNull { try Self.normalizer(n, into: &normalizer) }

        // pre-tokenizer
        var steps = [PreTokenizerStep]()
        if let p = root["pre_tokenizer"], !p.isNull { try Self.preTokenizer(p, into: &steps) }

        // post-processor
        var prefix = [Int32](), suffix = [Int32]()
        if let p = root["post_processor"], !p.isNull {
            try Self.postProcessor(p, idOf: addedOrVocabId, prefix: &prefix, suffix: &suffix)
        }

        // decoder
        var decoder = DecoderKind.none
        if let d = root["decoder"], !d.isNull {
            guard let t = d["type"]?.string else { throw TokenizerError.malformed("decoder has no type") }
            if t == "ByteLevel" { decoder = .byteLevel } else {
                var chain = [DecodeStep]()
                try Self.decoder(d, into: &chain)
                decoder = .chain(chain)
            }
        }

        // transformers 5's LlamaTokenizer class replaces normalizer, pre-tokenizer and decoder
        let cls = config?["tokenizer_class"]?.string ?? ""
        if cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast" {
            guard model.byteFallback else {
                throw TokenizerError.unsupported("tokenizer_class \(cls) with a BPE model without byte_fallback")
            }
            let addPrefixSpace = config?["add_prefix_space"].bool(default: true) ?? true
            let legacy = config?["legacy"].bool(default: false) ?? false
            normalizer = []
            steps = [.metaspace("\u{2581}", addPrefixSpace ? (legacy ? .always : .first) : .never, split: false)]
            var chain: [DecodeStep] = [.replace("\u{2581}", " "), .byteFallback, .fuse]
            if addPrefixSpace { chain.append(.strip(" ", start: 1, stop: 0)) }
            decoder = .chain(chain)
        }

        // BOS / EOS: the template's special tokens, else conventional names
        func configToken(_ key: String) -> Int? {
            guard let v = config?[key], let name = v.string ?? v["content"]?.string else { return nil }
            return addedOrVocabId(name).map(Int.init)
        }
        let bos: Int? = prefix.first.map(Int.init) ?? configToken("bos_token")
            ?? ["<|begin_of_text|>", "<s>", "<|endoftext|>", "<|im_start|>"].lazy.compactMap { addedOrVocabId($0) }.first.map(Int.init)
        let eos: Int? = suffix.last.map(Int.init) ?? configToken("eos_token")
            ?? ["<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>"].lazy.compactMap { addedOrVocabId($0) }.first.map(Int.init)
        self.init(model: model, addedTokens: added, steps: steps, prefixIds: prefix, suffixIds: suffix,
                  decoder: decoder, bosId: bos, eosId: eos, normalizer: normalizer)
    }

    private static func normalizer(_ n: JSONValue, into steps: inout [NormalizerStep]) throws {
        guard let type = n["type"]?.string else { throw TokenizerError.malformed("normalizer has no type") }
        switch type {
        case "Sequence":
            guard let list = n["normalizers"]?.array else { throw TokenizerError.malformed("Sequence normalizer lacks normalizers") }
            for q in list { try normalizer(q, into: &steps) }
        case "Prepend":
            guard let p = n["prepend"]?.string else { throw TokenizerError.malformed("Prepend normalizer lacks prepend") }
            steps.append(.prepend(Array(p.unicodeScalars)))
        case "Replace":
            guard let c = n["content"]?.string else { throw TokenizerError.malformed("Replace normalizer lacks content") }
            guard let pat = n["pattern"]?["String"]?.string else {
                throw TokenizerError.unsupported("normalizer Replace with a non-String pattern")
            }
            steps.append(.replace(Array(pat.unicodeScalars), Array(c.unicodeScalars)))
        default:
            throw TokenizerError.unsupported("normalizer \(type)")
        }
    }

    private static func decoder(_ d: JSONValue, into chain: inout [DecodeStep]) throws {
        guard let type = d["type"]?.string else { throw TokenizerError.malformed("decoder has no type") }
        func char(_ key: String) throws -> Character {
            guard let s = d[key]?.string, s.count == 1, let c = s.first else {
                throw TokenizerError.malformed("decoder \(type) \(key) is not one character")
            }
            return c
        }
        switch type {
        case "Sequence":
            guard let list = d["decoders"]?.array else { throw TokenizerError.malformed("Sequence decoder lacks decoders") }
            for q in list { try decoder(q, into: &chain) }
        case "ByteLevel": chain.append(.byteLevel)
        case "ByteFallback": chain.append(.byteFallback)
        case "Fuse": chain.append(.fuse)
        case "Replace":
            guard let pat = d["pattern"]?["String"]?.string, let c = d["content"]?.string else {
                throw TokenizerError.unsupported("decoder Replace with a non-String pattern")
            }
            chain.append(.replace(pat, c))
        case "Strip":
            chain.append(.strip(try char("content"), start: d["start"]?.int32.map(Int.init) ?? 0,
                                stop: d["stop"]?.int32.map(Int.init) ?? 0))
        case "Metaspace":
            chain.append(.metaspace(try char("replacement"), try prependScheme(d)))
        default:
            throw TokenizerError.unsupported("decoder \(type)")
        }
    }

    /// Metaspace's prepend_scheme, or the older add_prefix_space (true: always).
    private static func prependScheme(_ p: JSONValue) throws -> PrependScheme {
        if let s = p["prepend_scheme"]?.string {
            guard let v = PrependScheme(rawValue: s) else { throw TokenizerError.unsupported("Metaspace prepend_scheme \(s)") }
            return v
        }
        return p["add_prefix_space"].bool(default: true) ? .always : .never
    }

    private static func preTokenizer(_ p: JSONValue, into steps: inout [PreTokenizerStep]) throws {
        guard let type = p["type"]?.string else { throw TokenizerError.malformed("pre_tokenizer has no type") }
        switch type {
        case "Sequence":
            guard let list = p["pretokenizers"]?.array else { throw TokenizerError.malformed("Sequence pre_tokenizer lacks pretokenizers") }
            for q in list { try preTokenizer(q, into: &steps) }
        case "ByteLevel":
            steps.append(.byteLevel(addPrefixSpace: p["add_prefix_space"].bool(default: true),
                                    useRegex: p["use_regex"].bool(default: true)))
        case "Digits":
            steps.append(.split(.numericScalar, p["individual_digits"].bool() ? .isolated : .contiguous, invert: false))
        case "Split":
            guard let pat = p["pattern"] else { throw TokenizerError.malformed("Split pre_tokenizer lacks pattern") }
            let pattern: SplitPattern
            if let r = pat["Regex"]?.string { pattern = try SplitPattern(regex: r) }
            else if let s = pat["String"]?.string { pattern = .literal(Array(s.unicodeScalars)) }
            else { throw TokenizerError.malformed("Split pattern is neither Regex nor String") }
            let bname = p["behavior"]?.string ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: bname) else { throw TokenizerError.unsupported("Split behavior \(bname)") }
            steps.append(.split(pattern, behavior, invert: p["invert"].bool()))
        case "Metaspace":
            guard let r = p["replacement"]?.string, r.unicodeScalars.count == 1, let rep = r.unicodeScalars.first else {
                throw TokenizerError.malformed("Metaspace replacement is not one character")
            }
            steps.append(.metaspace(rep, try prependScheme(p), split: p["split"].bool(default: true)))
        default:
            throw TokenizerError.unsupported("pre_tokenizer \(type)")
        }
    }

    private static func postProcessor(_ p: JSONValue, idOf: (String) -> Int32?, prefix: inout [Int32],
                                      suffix: inout [Int32]) throws {
        guard let type = p["type"]?.string else { throw TokenizerError.malformed("post_processor has no type") }
        func pairId(_ v: JSONValue?, _ what: String) throws -> Int32 {
            guard let a = v?.array, a.count == 2, let id = a[1].int32 else {
                throw TokenizerError.malformed("post_processor \(what) is not [token, id]")
            }
            return id
        }
        switch type {
        case "ByteLevel": break
        case "Sequence":
            guard let list = p["processors"]?.array else { throw TokenizerError.malformed("Sequence post_processor lacks processors") }
            for q in list { try postProcessor(q, idOf: idOf, prefix: &prefix, suffix: &suffix) }
        case "RobertaProcessing", "BertProcessing":
            prefix.append(try pairId(p["cls"], "cls"))
            suffix.append(try pairId(p["sep"], "sep"))
        case "TemplateProcessing":
            guard let single = p["single"]?.array else { throw TokenizerError.malformed("TemplateProcessing lacks single") }
            var seenSequence = false
            for item in single {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let name = item["SpecialToken"]?["id"]?.string else {
                    throw TokenizerError.malformed("TemplateProcessing item is neither Sequence nor SpecialToken")
                }
                var ids = [Int32]()
                if let list = p["special_tokens"]?[name]?["ids"]?.array {
                    for x in list {
                        guard let id = x.int32 else { throw TokenizerError.malformed("TemplateProcessing special token \(name) has a bad id") }
                        ids.append(id)
                    }
                } else if let id = idOf(name) {
                    ids = [id]
                } else {
                    throw TokenizerError.malformed("TemplateProcessing special token \(name.debugDescription) is unknown")
                }
                if seenSequence { suffix.append(contentsOf: ids) } else { prefix.append(contentsOf: ids) }
            }
        default:
            throw TokenizerError.unsupported("post_processor \(type)")
        }
    }
}
