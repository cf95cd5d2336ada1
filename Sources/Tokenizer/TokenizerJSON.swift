// Loading a Hugging Face `tokenizer.json`: a BPE model (vocab + merges, merges as "a b" or ["a", "b"]),
// pre-tokenizers ByteLevel / Split / Digits / Sequence, added tokens, post-processors TemplateProcessing /
// ByteLevel / Roberta / Bert / Sequence, decoder ByteLevel. Anything else is refused with a clear error
// rather than tokenized differently from HF.
import Foundation

extension BPETokenizer {
    public convenience init(tokenizerJSON url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError.io(path: url.path, reason: (error as NSError).localizedDescription)
        }
        try self.init(tokenizerJSONData: data)
    }

    public convenience init(tokenizerJSONData data: Data) throws {
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

        // normalizer: none, or an empty Sequence
        if let n = root["normalizer"], !n.isNull {
            let t = n["type"]?.string ?? "?"
            if !(t == "Sequence" && (n["normalizers"]?.array?.isEmpty ?? false)) {
                throw TokenizerError.unsupported("normalizer \(t)")
            }
        }

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
            guard t == "ByteLevel" else { throw TokenizerError.unsupported("decoder \(t)") }
            decoder = .byteLevel
        }

        // BOS / EOS: the template's special tokens, else conventional names
        let bos: Int? = prefix.first.map(Int.init)
            ?? ["<|begin_of_text|>", "<s>", "<|endoftext|>", "<|im_start|>"].lazy.compactMap { addedOrVocabId($0) }.first.map(Int.init)
        let eos: Int? = suffix.last.map(Int.init)
            ?? ["<|end_of_text|>", "</s>", "<|endoftext|>", "<|im_end|>"].lazy.compactMap { addedOrVocabId($0) }.first.map(Int.init)
        self.init(model: model, addedTokens: added, steps: steps, prefixIds: prefix, suffixIds: suffix,
                  decoder: decoder, bosId: bos, eosId: eos)
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
