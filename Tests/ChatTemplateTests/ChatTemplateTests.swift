// The Jinja subset against transformers' own rendering (render_jinja_template, what apply_chat_template runs;
// golden from scripts/reference/generate_golden.py --chat): templates in the style of SmolLM2's, Llama-3's and
// Qwen2's, one for Jinja2's whitespace rules under trim_blocks/lstrip_blocks, and one for expressions, filters,
// tests, loops, namespaces and methods, each over three conversations with and without the generation prompt.
// And what is refused: one line naming the construct and the line.
import Foundation
import Testing
@testable import ChatTemplate

let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")

struct ChatGolden {
    static var data: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(contentsOf: resources.appendingPathComponent("chat_golden.json"))))
            as? [String: Any] ?? [:]
    }
    static var templates: [String: String] { data["templates"] as? [String: String] ?? [:] }
    static var conversations: [[ChatMessage]] {
        (data["conversations"] as? [[[String: String]]] ?? []).map { $0.map { ChatMessage(role: $0["role"]!, content: $0["content"]!) } }
    }
    static var special: [String: String] { data["special_tokens"] as? [String: String] ?? [:] }
    static var cases: [[String: Any]] { data["cases"] as? [[String: Any]] ?? [] }
}

struct ChatTemplateTests {
    @Test(arguments: ["llama3_style", "qwen2_style", "smollm2_style", "whitespace", "features"])
    func rendersAsTransformers(_ name: String) throws {
        let template = try ChatTemplate(try #require(ChatGolden.templates[name]))
        let cases = ChatGolden.cases.filter { $0["template"] as? String == name }
        #expect(cases.count == 6)
        for c in cases {
            let conv = ChatGolden.conversations[c["conversation"] as! Int]
            let agp = c["add_generation_prompt"] as! Bool
            let got = try template.render(messages: conv, addGenerationPrompt: agp, specialTokens: ChatGolden.special)
            let expected = c["expected"] as! String
            #expect(got == expected, "\(name), conversation \(c["conversation"]!), add_generation_prompt \(agp)")
            if got != expected {
                let a = Array(got), b = Array(expected)
                let i = zip(a, b).prefix { $0 == $1 }.count
                print("first difference at \(i): ours \(String(a[i...].prefix(60)).debugDescription) vs \(String(b[i...].prefix(60)).debugDescription)")
            }
        }
    }

    func error(_ template: String, messages: [ChatMessage] = [ChatMessage(role: "user", content: "hi")]) -> String {
        do {
            _ = try ChatTemplate(template).render(messages: messages, addGenerationPrompt: true)
            return ""
        } catch {
            return String(describing: error)
        }
    }

    @Test func unsupportedConstructsAreNamed() {
        let macro = error("a\n{% macro m() %}x{% endmacro %}")
        #expect(macro == "chat template line 2: unsupported construct {% macro %}")
        #expect(error("{{ 'x' | frobnicate }}") == "chat template line 1: unsupported construct filter |frobnicate")
        #expect(error("{% if x is prime %}{% endif %}") == "chat template line 1: unsupported construct test \"is prime\"")
        #expect(error("{% include 'other.jinja' %}").contains("{% include %}"))
        #expect(error("{% for m in messages recursive %}{% endfor %}").contains("recursive"))
        #expect(error("{{ 'a'.format(1) }}").contains("str.format()"))
        #expect(error("{{ '%s' % 'x' }}").contains("printf-style"))
    }

    @Test func syntaxAndRenderErrorsAreOneLineWithTheLine() {
        #expect(error("x\n\n{{ messages[0] ") == "chat template line 3: a tag opened here is never closed with }}")
        #expect(error("{% if true %}x") == "chat template line 1: {% if %} is never closed by {% endif %}")
        #expect(error("{% endfor %}") == "chat template line 1: unexpected {% endfor %}")
        #expect(error("{{ 1 + }}").hasPrefix("chat template line 1: unexpected end of tag"))
        #expect(error("{{ undefined_thing.role }}") == "chat template line 1: 'undefined_thing' is undefined (reading .role)")
        #expect(error("{{ 'a' + 1 }}") == "chat template line 1: unsupported operand types for +: 'str' and 'int'")
        let raised = error("{% for m in messages %}\n{% if m.role == 'user' %}{{ raise_exception('Only assistants!\\nreally') }}{% endif %}{% endfor %}")
        #expect(raised == "chat template line 2: raise_exception: Only assistants!\\nreally")
        #expect(!raised.contains("\n"))
    }

    /// SmolLM2-135M-Instruct's own template, from its GGUF, when the model is present (scripts/setup.sh): it renders
    /// every conversation as the SmolLM2-style copy does under transformers (the copy writes its newlines as \n
    /// escapes, the original as raw newlines inside the literals).
    @Test func smolLM2sOwnTemplateRendersAsTransformers() throws {
        let gguf = resources.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        guard let data = try? Data(contentsOf: gguf, options: .alwaysMapped),
              let r = data.range(of: Data("tokenizer.chat_template".utf8)) else { return }
        // GGUF string value: type (u32 = 8), length (u64), bytes.
        let at = r.upperBound + 4
        let n = data[at..<(at + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let source = String(decoding: data[(at + 8)..<(at + 8 + Int(n))], as: UTF8.self)
        #expect(source.contains("You are a helpful AI assistant named SmolLM"))
        let template = try ChatTemplate(source)
        for c in ChatGolden.cases where c["template"] as? String == "smollm2_style" {
            let conv = ChatGolden.conversations[c["conversation"] as! Int]
            #expect(try template.render(messages: conv, addGenerationPrompt: c["add_generation_prompt"] as! Bool)
                    == c["expected"] as! String)
        }
    }
}
