// Writing a tokenizer out as the Hugging Face files `transformers` loads (`AutoTokenizer.from_pretrained(dir)`):
// tokenizer.json (HF `tokenizers` format) and tokenizer_config.json. A model pruned from a GGUF has no such
// files, so llmprune writes them from the tokenizer it built.
//
// tokenizer.json mirrors what transformers 5.x builds from a GGUF byte-level vocabulary (and what
// `Tokenizer.to_str()` writes): BPE model with the vocabulary in the byte alphabet, merges as [left, right] pairs
// (unambiguous even for tokens holding a space), ignore_merges false, no normalizer, the pre-tokenizer steps,
// a TemplateProcessing post-processor (BOS/EOS as the tokenizer adds them), the ByteLevel decoder and the added
// tokens sorted by id. SentencePiece-style tokenizers are written the same way with their pipeline as llmprune
// encodes it: the normalizer steps (Prepend / Replace), the Metaspace pre-tokenizer and the decoder chain
// (Replace, ByteFallback, Fuse, Strip); a tokenizer.json that named `LlamaTokenizer` in its config is written with
// the pipeline that class rebuilt, so tokenizer.json alone encodes alike. A GGUF "llama" vocabulary becomes the
// BPE transformers builds from it: byte_fallback, fuse_unk, merges recovered from the scores
// (SentencePieceExport.swift). tokenizer_config.json names the class `PreTrainedTokenizerFast` (so transformers loads
// tokenizer.json as is rather than rebuilding a model-specific class), the BOS/EOS/UNK/PAD tokens, add_bos_token /
// add_eos_token and model_max_length.
//
// The JSON is written by hand, byte by byte from each string's UTF-8: Foundation's JSONSerialization on Linux
// mangles U+FEFF, and Swift dictionaries keyed by String merge canonically equivalent tokens.
import Foundation

extension BPETokenizer {
    /// tokenizer.json (HF `tokenizers` format) that reproduces this tokenizer's ids exactly.
    public func tokenizerJSON() throws -> Data {
        // a GGUF SentencePiece vocabulary is written as the merge-list BPE transformers builds from it
        if spm != nil { return try mergeListForm().tokenizerJSON() }
        var root = [(String, JSONOut)]()
        root.append(("version", .string("1.0")))
        root.append(("truncation", .null))
        root.append(("padding", .null))
        root.append(("added_tokens", .array(addedTokens.sorted { $0.id < $1.id }.map(Self.addedTokenJSON))))
        root.append(("normalizer", normalizerJSON()))
        root.append(("pre_tokenizer", try preTokenizerJSON()))
        root.append(("post_processor", try postProcessorJSON()))
        switch decoder {
        case .byteLevel:
            root.append(("decoder", .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)),
                                             ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])))
        case .chain(let chain):
            root.append(("decoder", .object([("type", .string("Sequence")), ("decoders", .array(chain.map(Self.decodeStepJSON)))])))
        case .none:
            root.append(("decoder", .null))
        }
        root.append(("model", try modelJSON()))
        var w = JSONOutWriter()
        w.write(.object(root), indent: 0)
        w.bytes.append(0x0A)
        return Data(w.bytes)
    }

    /// tokenizer_config.json: what transformers needs besides tokenizer.json -- the tokenizer class
    /// (`PreTrainedTokenizerFast`, i.e. load tokenizer.json as it is), the BOS/EOS/UNK/PAD tokens, whether BOS/EOS
    /// are added, and `model_max_length`. `chatTemplate` (a GGUF's `tokenizer.chat_template`) is written when given.
    ///
    /// A named token is written only when it is one of the added tokens: transformers adds every token its config
    /// names as a special token, which would otherwise change the ids. add_bos_token / add_eos_token are written
    /// only when the post-processor adds exactly BOS before / EOS after (transformers then rebuilds the same
    /// template from them); otherwise they are left out and transformers keeps tokenizer.json's post-processor.
    public func tokenizerConfigJSON(modelMaxLength: Int, chatTemplate: String? = nil) throws -> Data {
        guard modelMaxLength > 0 else { throw TokenizerError.invalidArgument("model_max_length \(modelMaxLength) is not positive") }
        var c = [(String, JSONOut)]()
        if let (bos, eos) = addsBOSEOS {
            c.append(("add_bos_token", .bool(bos)))
            c.append(("add_eos_token", .bool(eos)))
        }
        c.append(("bos_token", namedToken(bosId)))
        c.append(("clean_up_tokenization_spaces", .bool(false)))
        c.append(("eos_token", namedToken(eosId)))
        c.append(("model_max_length", .int(modelMaxLength)))
        c.append(("pad_token", namedToken(padId)))
        c.append(("tokenizer_class", .string("PreTrainedTokenizerFast")))
        c.append(("unk_token", namedToken(unkId ?? model.unkId.map(Int.init))))
        if let chatTemplate { c.append(("chat_template", .string(chatTemplate))) }
        var w = JSONOutWriter()
        w.write(.object(c), indent: 0)
        w.bytes.append(0x0A)
        return Data(w.bytes)
    }

    /// Writes tokenizer.json and tokenizer_config.json into `directory` (created if needed).
    public func writeHuggingFaceFiles(to directory: URL, modelMaxLength: Int, chatTemplate: String? = nil) throws {
        let json = try tokenizerJSON()
        let config = try tokenizerConfigJSON(modelMaxLength: modelMaxLength, chatTemplate: chatTemplate)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try json.write(to: directory.appendingPathComponent("tokenizer.json"), options: .atomic)
            try config.write(to: directory.appendingPathComponent("tokenizer_config.json"), options: .atomic)
        } catch {
            throw TokenizerError.io(path: directory.path, reason: (error as NSError).localizedDescription)
        }
    }

    // MARK: parts

    /// (add BOS, add EOS) when the post-processor is expressible that way, else nil.
    private var addsBOSEOS: (Bool, Bool)? {
        func named(_ id: Int?) -> Bool { id.map { addedById[Int32($0)] != nil } ?? false }
        let bos: Bool, eos: Bool
        if prefixIds.isEmpty { bos = false } else if let b = bosId, prefixIds == [Int32(b)], named(b) { bos = true } else { return nil }
        if suffixIds.isEmpty { eos = false } else if let e = eosId, suffixIds == [Int32(e)], named(e) { eos = true } else { return nil }
        return (bos, eos)
    }

    private func namedToken(_ id: Int?) -> JSONOut {
        guard let id, let s = addedById[Int32(truncatingIfNeeded: id)] else { return .null }
        return .string(s)
    }

    private static func addedTokenJSON(_ t: AddedToken) -> JSONOut {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: t.content)
        return .object([("id", .int(Int(t.id))), ("content", .string(String(v))), ("single_word", .bool(t.singleWord)),
                        ("lstrip", .bool(t.lstrip)), ("rstrip", .bool(t.rstrip)), ("normalized", .bool(t.normalized)),
                        ("special", .bool(t.special))])
    }

    private static func scalars(_ s: [Unicode.Scalar]) -> String {
        var v = String.UnicodeScalarView(); v.append(contentsOf: s); return String(v)
    }

    /// The normalizer steps read (Prepend / Replace with a String pattern), as a Sequence; null when none.
    private func normalizerJSON() -> JSONOut {
        if normalizer.isEmpty { return .null }
        let parts = normalizer.map { step -> JSONOut in
            switch step {
            case .prepend(let p):
                return .object([("type", .string("Prepend")), ("prepend", .string(Self.scalars(p)))])
            case .replace(let pat, let content):
                return .object([("type", .string("Replace")), ("pattern", .object([("String", .string(Self.scalars(pat)))])),
                                ("content", .string(Self.scalars(content)))])
            }
        }
        return .object([("type", .string("Sequence")), ("normalizers", .array(parts))])
    }

    private static func decodeStepJSON(_ step: DecodeStep) -> JSONOut {
        switch step {
        case .replace(let a, let b):
            return .object([("type", .string("Replace")), ("pattern", .object([("String", .string(a))])), ("content", .string(b))])
        case .byteFallback: return .object([("type", .string("ByteFallback"))])
        case .fuse: return .object([("type", .string("Fuse"))])
        case .strip(let c, let start, let stop):
            return .object([("type", .string("Strip")), ("content", .string(String(c))), ("start", .int(start)), ("stop", .int(stop))])
        case .metaspace(let c, let scheme):
            return .object([("type", .string("Metaspace")), ("replacement", .string(String(c))),
                            ("prepend_scheme", .string(scheme.rawValue)), ("split", .bool(true))])
        case .byteLevel:
            return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)),
                            ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
        }
    }

    private func preTokenizerJSON() throws -> JSONOut {
        let parts = steps.map { step -> JSONOut in
            switch step {
            case .metaspace(let rep, let scheme, let split):
                return .object([("type", .string("Metaspace")), ("replacement", .string(String(Character(rep)))),
                                ("prepend_scheme", .string(scheme.rawValue)), ("split", .bool(split))])
            case .byteLevel(let addPrefixSpace, let useRegex):
                return .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(addPrefixSpace)),
                                ("trim_offsets", .bool(true)), ("use_regex", .bool(useRegex))])
            case .split(.numericScalar, let behavior, _):
                // the reader maps Digits(individual_digits) to Isolated, else Contiguous
                return .object([("type", .string("Digits")), ("individual_digits", .bool(behavior == .isolated))])
            case .split(let pattern, let behavior, let invert):
                let p: JSONOut
                switch pattern {
                case .known(.gpt2): p = .object([("Regex", .string(KnownPattern.gpt2Regex))])
                case .known(.llama3(let maxDigits)):
                    p = .object([("Regex", .string(maxDigits == 1 ? KnownPattern.qwen2Regex : KnownPattern.llama3Regex))])
                case .regex(let re): p = .object([("Regex", .string(re.pattern))])
                case .literal(let lit):
                    var v = String.UnicodeScalarView(); v.append(contentsOf: lit)
                    p = .object([("String", .string(String(v)))])
                case .numericScalar: p = .null  // handled above
                }
                return .object([("type", .string("Split")), ("pattern", p), ("behavior", .string(behavior.rawValue)),
                                ("invert", .bool(invert))])
            }
        }
        if parts.isEmpty { return .null }
        if parts.count == 1 { return parts[0] }
        return .object([("type", .string("Sequence")), ("pretokenizers", .array(parts))])
    }

    private func postProcessorJSON() throws -> JSONOut {
        var specials = [(String, JSONOut)]()
        var seen = Set<Int32>()
        func item(_ id: Int32, typeId: Int) throws -> JSONOut {
            guard let name = token(of: Int(id)) else {
                throw TokenizerError.invalidArgument("post-processor token id \(id) has no token")
            }
            if !seen.contains(id) {
                seen.insert(id)
                specials.append((name, .object([("id", .string(name)), ("ids", .array([.int(Int(id))])),
                                                ("tokens", .array([.string(name)]))])))
            }
            return .object([("SpecialToken", .object([("id", .string(name)), ("type_id", .int(typeId))]))])
        }
        func sequence(_ name: String, _ typeId: Int) -> JSONOut {
            .object([("Sequence", .object([("id", .string(name)), ("type_id", .int(typeId))]))])
        }
        var single = [JSONOut](), pair = [JSONOut]()
        for id in prefixIds { single.append(try item(id, typeId: 0)) }
        single.append(sequence("A", 0))
        for id in suffixIds { single.append(try item(id, typeId: 0)) }
        pair = single
        for id in prefixIds { pair.append(try item(id, typeId: 1)) }
        pair.append(sequence("B", 1))
        for id in suffixIds { pair.append(try item(id, typeId: 1)) }
        return .object([("type", .string("TemplateProcessing")), ("single", .array(single)), ("pair", .array(pair)),
                        ("special_tokens", .object(specials))])
    }

    private func modelJSON() throws -> JSONOut {
        // vocabulary by id (HF's order); two tokens on one id keep the dictionary's, i.e. HF's, last one
        let vocab = model.vocab.sorted { $0.value != $1.value ? $0.value < $1.value : $0.key.string.utf8.lexicographicallyPrecedes($1.key.string.utf8) }
        // merges by rank; a repeated pair kept its last rank when read, as in HF, so the order is what counts
        var merges = [(rank: UInt64, left: Int, right: Int)]()
        merges.reserveCapacity(model.merges.count)
        for (pairKey, value) in model.merges {
            merges.append((value >> 32, Int(pairKey >> 32), Int(pairKey & 0xFFFF_FFFF)))
        }
        merges.sort { $0.rank < $1.rank }
        var mergeOut = [JSONOut]()
        mergeOut.reserveCapacity(merges.count)
        for m in merges {
            guard m.left < model.idToToken.count, let l = model.idToToken[m.left],
                  m.right < model.idToToken.count, let r = model.idToToken[m.right] else {
                throw TokenizerError.invalidArgument("merge of ids \(m.left), \(m.right) without tokens")
            }
            mergeOut.append(.array([.string(l), .string(r)]))
        }
        var unk = JSONOut.null
        if let u = model.unkId {
            guard let s = model.idToToken[Int(u)] else { throw TokenizerError.invalidArgument("unk id \(u) has no token") }
            unk = .string(s)
        }
        return .object([
            ("type", .string("BPE")),
            ("dropout", .null),
            ("unk_token", unk),
            ("continuing_subword_prefix", .null),
            ("end_of_word_suffix", .null),
            ("fuse_unk", .bool(model.fuseUnk)),
            ("byte_fallback", .bool(model.byteFallback)),
            ("ignore_merges", .bool(model.ignoreMerges)),
            ("vocab", .object(vocab.map { ($0.key.string, .int(Int($0.value))) })),
            ("merges", .array(mergeOut)),
        ])
    }
}

// MARK: JSON output

/// A JSON value to write. Objects keep their members in order, keys exactly as given.
enum JSONOut {
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case array([JSONOut])
    case object([(String, JSONOut)])

    var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }
}

/// Writes JSON with two-space indentation; arrays of scalars (merge pairs, id lists) stay on one line. Strings
/// are written from their UTF-8 bytes: `"` and `\` escaped, control characters as \n \r \t \b \f or \u00XX,
/// everything else (DEL, non-ASCII, U+FEFF, U+2028) as is -- what serde_json writes.
struct JSONOutWriter {
    var bytes = [UInt8]()

    private static let hex = Array("0123456789abcdef".utf8)

    mutating func writeString(_ s: String) {
        bytes.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: bytes.append(0x5C); bytes.append(0x22)
            case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
            case 0x0A: bytes.append(0x5C); bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(0x5C); bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(0x5C); bytes.append(UInt8(ascii: "t"))
            case 0x08: bytes.append(0x5C); bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(0x5C); bytes.append(UInt8(ascii: "f"))
            case 0..<0x20:
                bytes.append(contentsOf: Array(#"\u00"#.utf8))
                bytes.append(Self.hex[Int(b >> 4)])
                bytes.append(Self.hex[Int(b & 0xF)])
            default: bytes.append(b)
            }
        }
        bytes.append(0x22)
    }

    private mutating func newline(_ indent: Int) {
        bytes.append(0x0A)
        bytes.append(contentsOf: repeatElement(0x20, count: indent * 2))
    }

    mutating func write(_ v: JSONOut, indent: Int) {
        switch v {
        case .null: bytes.append(contentsOf: Array("null".utf8))
        case .bool(let b): bytes.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .int(let i): bytes.append(contentsOf: Array(String(i).utf8))
        case .string(let s): writeString(s)
        case .array(let items):
            if items.isEmpty { bytes.append(contentsOf: Array("[]".utf8)); return }
            let inline = items.allSatisfy(\.isScalar)
            bytes.append(UInt8(ascii: "["))
            for (k, item) in items.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")); if inline { bytes.append(0x20) } }
                if !inline { newline(indent + 1) }
                write(item, indent: indent + 1)
            }
            if !inline { newline(indent) }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            if members.isEmpty { bytes.append(contentsOf: Array("{}".utf8)); return }
            bytes.append(UInt8(ascii: "{"))
            for (k, (key, value)) in members.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                writeString(key)
                bytes.append(contentsOf: Array(": ".utf8))
                write(value, indent: indent + 1)
            }
            newline(indent)
            bytes.append(UInt8(ascii: "}"))
        }
    }
}
