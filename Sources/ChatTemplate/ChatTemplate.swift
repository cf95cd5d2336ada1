// A model's chat template, rendered as transformers' apply_chat_template renders it (chat_template_utils.py
// render_jinja_template): the Jinja2 source run with messages, tools = None, documents = None,
// add_generation_prompt and the tokenizer's special tokens (bos_token, eos_token, …) as variables, and the globals
// raise_exception, strftime_now, dict and namespace. The interpreter is a subset of Jinja2 (Lexer, Parser,
// Interpreter, Builtins): enough for the templates of SmolLM2, Llama-3.x and Qwen2.x; anything else is refused with
// a one-line error naming the construct and the template line.
import Foundation

public struct ChatMessage: Equatable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

public struct ChatTemplate {
    private let nodes: [Node]

    /// Parses `source`; a syntax error or an unsupported statement is thrown here, before any rendering.
    public init(_ source: String) throws {
        nodes = try TemplateParser.parse(source)
    }

    /// The prompt for `messages`: each message a {role, content} dict, `specialTokens` by name
    /// ("bos_token": "<s>", …), `extra` any further variables.
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, specialTokens: [String: String] = [:],
                       extra: [String: Value] = [:]) throws -> String {
        var globals: [String: Value] = [
            "raise_exception": .function("raise_exception"), "strftime_now": .function("strftime_now"),
            "dict": .function("dict"), "namespace": .function("namespace"), "range": .function("range"),
        ]
        for (k, v) in specialTokens { globals[k] = .string(v) }
        globals["messages"] = .list(messages.map { .dict(OrderedDict([("role", .string($0.role)), ("content", .string($0.content))])) })
        globals["tools"] = Value.none
        globals["documents"] = Value.none
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        for (k, v) in extra { globals[k] = v }
        return try Interpreter(globals: globals).render(nodes)
    }
}
