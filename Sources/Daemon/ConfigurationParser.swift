// Reading a configuration file: YAML (Yams' node tree, which keeps line and column) to a validated
// `DaemonConfiguration`. Every problem is collected with its key path, position, the bad value and
// what to do; nothing stops at the first error. Unknown keys are errors with a did-you-mean.
import Florence2
import Foundation
import Logging
import Yams

// MARK: - Entry points

extension DaemonConfiguration {
    /// Reads and validates the file at `path`. Relative paths inside it (model, password file, TLS
    /// files, image sources) are taken relative to the file's directory. Throws `ConfigurationError`
    /// with every problem found.
    public static func load(path: String, hostname: String? = nil) throws -> DaemonConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read (permissions?)" : "does not exist"
            throw ConfigurationError(source: path, issues: [ConfigurationIssue(path: "", message: "the configuration file \(why)")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(source: path, issues: [ConfigurationIssue(path: "", message: "the file is not UTF-8 text")])
        }
        let dir = (PathText.absolute(path, base: FileManager.default.currentDirectoryPath) as NSString).deletingLastPathComponent
        return try parse(yaml: text, source: path, baseDirectory: dir, hostname: hostname)
    }

    /// Parses and validates YAML text. `source` names it in errors; relative paths are resolved
    /// against `baseDirectory` (nil: left relative, i.e. to the working directory); `hostname`
    /// replaces this machine's host name for the `node_id` default (tests).
    public static func parse(yaml: String, source: String = "<string>", baseDirectory: String? = nil,
                             hostname: String? = nil) throws -> DaemonConfiguration {
        let reader = ConfigurationReader(baseDirectory: baseDirectory)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationError(source: source, issues: [ConfigurationReader.syntaxIssue(error)])
        }
        let config = reader.readFile(root, hostname: hostname ?? currentHostname())
        let errors = reader.issues.filter { $0.severity == .error }
        // In file order (stable: issues of one key stay in the order they were found).
        let ordered = reader.issues.enumerated().sorted { a, b in
            let la = a.element.line ?? 0, lb = b.element.line ?? 0
            if la != lb { return la < lb }
            let ca = a.element.column ?? 0, cb = b.element.column ?? 0
            return ca != cb ? ca < cb : a.offset < b.offset
        }.map(\.element)
        guard errors.isEmpty else { throw ConfigurationError(source: source, issues: ordered) }
        return config
    }
}

// MARK: - Schema

/// The keys each section accepts (the single list the parser, the suggestions and the docs test use).
enum Schema {
    static let top = ["node_id", "log_level", "broker", "model", "cameras", "health", "homeassistant", "outbox"]
    static let broker = ["host", "port", "tls", "username", "password_file", "password_credential", "client_id",
                         "topic_prefix", "qos", "keepalive", "protocol"]
    static let tls = ["ca_file", "cert_file", "key_file", "key_credential", "insecure"]
    static let model = ["path", "precision", "threads", "memory_budget", "max_new_tokens", "num_beams",
                        "max_prompt_tokens", "image_size"]
    static let camera = ["source", "size", "fps", "enabled", "tasks"]
    static let task = ["task", "text", "interval", "retain", "name"]
    static let health = ["interval"]
    static let homeAssistant = ["discovery", "discovery_prefix"]
    static let outbox = ["capacity"]

    /// Section name (as the user would write the path) and its keys, for "belongs under" hints.
    static let sections: [(String, [String])] = [
        ("broker", broker), ("broker.tls", tls), ("model", model), ("cameras.<name>", camera),
        ("cameras.<name>.tasks[i]", task), ("health", health), ("homeassistant", homeAssistant), ("outbox", outbox),
        ("the top level", top),
    ]

    /// Keys refused on purpose, with why and what to use instead.
    static let refused: [String: [String: (String, String)]] = [
        "broker": ["password": (
            "a plain password does not belong in the configuration file (it is readable by every service that reads /etc/ocellus and ends up in backups)",
            "put the password alone in a file readable only by the daemon (chmod 600) and name it in `password_file`, or load it as a systemd credential (`LoadCredential=mqtt_password:/etc/ocellus/credentials/mqtt_password` in the unit) and write `password_credential: mqtt_password`")],
        "broker.tls": ["key_password": (
            "an encrypted client key needs its passphrase in the configuration",
            "store the key unencrypted, readable only by the daemon (`key_file`, chmod 600) or as a systemd credential (`key_credential`)")],
    ]
}

// MARK: - Reader

/// Walks the YAML tree, builds the configuration and collects issues.
final class ConfigurationReader {
    let baseDirectory: String?
    private(set) var issues: [ConfigurationIssue] = []
    /// Key path → where its value is written.
    private(set) var positions: [String: SourcePosition] = [:]

    func record(_ path: String, _ node: Node) {
        if let m = node.mark { positions[path] = SourcePosition(line: m.line, column: m.column) }
    }

    init(baseDirectory: String?) { self.baseDirectory = baseDirectory }

    // MARK: Issues

    func error(_ path: String, _ node: Node?, _ message: String, value: String? = nil, hint: String? = nil) {
        issues.append(ConfigurationIssue(severity: .error, path: path, line: node?.mark?.line, column: node?.mark?.column,
                                         message: message, value: value, hint: hint))
    }

    func warn(_ path: String, _ node: Node?, _ message: String, value: String? = nil, hint: String? = nil) {
        issues.append(ConfigurationIssue(severity: .warning, path: path, line: node?.mark?.line, column: node?.mark?.column,
                                         message: message, value: value, hint: hint))
    }

    /// The issue of a file that is not valid YAML (with libyaml's position when it gives one).
    static func syntaxIssue(_ e: Error) -> ConfigurationIssue {
        var mark: Mark?
        var problem = "\(e)"
        if let y = e as? YamlError {
            switch y {
            case let .scanner(ctx, p, m, _), let .parser(ctx, p, m, _), let .composer(ctx, p, m, _):
                mark = m
                problem = (ctx.map { "\($0.text) " } ?? "") + p
            case let .duplicatedKeysInMapping(dups, ctx):
                mark = ctx.mark
                problem = "duplicate key\(dups.count == 1 ? "" : "s") \(dups.map { "'\($0)'" }.joined(separator: ", ")) in one mapping"
            default: break
            }
        }
        return ConfigurationIssue(path: "", line: mark?.line, column: mark?.column, message: "not valid YAML: \(problem)",
                                  hint: "check indentation (spaces, not tabs) and quoting around this point")
    }

    // MARK: Structure

    /// The entries of a mapping with string keys, each unknown key reported with a suggestion.
    struct Fields {
        let path: String
        var nodes: [String: Node] = [:]

        /// The value of `key`, nil when absent or null (`key:` with nothing, `~`, `null`).
        subscript(key: String) -> Node? {
            guard let n = nodes[key], !ConfigurationReader.isNull(n) else { return nil }
            return n
        }

        /// `path.key`.
        func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    }

    static func isNull(_ n: Node) -> Bool {
        if case .scalar = n { return n.null != nil }
        return false
    }

    static func kind(_ n: Node) -> String {
        switch n {
        case .scalar: return isNull(n) ? "nothing" : "a single value"
        case .mapping: return "a mapping (key: value lines)"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// Reads `node` as a mapping whose keys are in `allowed`; `section` names its schema entry for
    /// refused keys. Nil node (absent) gives empty fields; a non-mapping is an error.
    func fields(_ node: Node?, path: String, allowed: [String], section: String? = nil) -> Fields {
        var f = Fields(path: path)
        guard let node, !Self.isNull(node) else { return f }
        guard case let .mapping(m) = node else {
            error(path.isEmpty ? "" : path, node, "expected a mapping of keys (\(allowed.joined(separator: ", "))), found \(Self.kind(node))")
            return f
        }
        for (k, v) in m {
            guard case let .scalar(ks) = k else {
                error(path, k, "a key must be a plain name, found \(Self.kind(k))")
                continue
            }
            let key = ks.string
            let keyPath = f.path(key)
            if let (why, fix) = Schema.refused[section ?? path]?[key] {
                error(keyPath, k, why, hint: fix)
                continue
            }
            guard allowed.contains(key) else {
                unknownKey(key, keyPath: keyPath, node: k, allowed: allowed)
                continue
            }
            f.nodes[key] = v
            record(keyPath, v)
        }
        return f
    }

    private func unknownKey(_ key: String, keyPath: String, node: Node, allowed: [String]) {
        let hint: String
        if let s = Suggestion.nearest(to: key, among: allowed) {
            hint = "did you mean '\(s)'?"
        } else if let home = Schema.sections.first(where: { $0.1.contains(key) })?.0 {
            hint = "'\(key)' belongs under \(home), not here"
        } else {
            hint = "known keys here: \(allowed.joined(separator: ", "))"
        }
        error(keyPath, node, "unknown key", value: key, hint: hint)
    }

    // MARK: Scalars

    /// The text of a scalar; another kind of node is an error.
    func scalar(_ node: Node, _ path: String, expected: String) -> String? {
        guard case let .scalar(s) = node else {
            error(path, node, "expected \(expected), found \(Self.kind(node))")
            return nil
        }
        return s.string
    }

    func string(_ f: Fields, _ key: String, nonEmpty: Bool = true) -> String? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a string") else { return nil }
        if nonEmpty, s.trimmingCharacters(in: .whitespaces).isEmpty {
            error(f.path(key), n, "must not be empty")
            return nil
        }
        return s
    }

    func int(_ f: Fields, _ key: String, _ range: ClosedRange<Int>, unit: String = "") -> Int? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a whole number") else { return nil }
        guard let v = Int(s.replacingOccurrences(of: "_", with: "")) else {
            error(f.path(key), n, "expected a whole number\(unit)", value: s, hint: "write it as digits, e.g. \(range.lowerBound)")
            return nil
        }
        guard range.contains(v) else {
            error(f.path(key), n, "out of range", value: s, hint: "use \(range.lowerBound) to \(range.upperBound)\(unit)")
            return nil
        }
        return v
    }

    func number(_ f: Fields, _ key: String, above low: Double, atMost high: Double) -> Double? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a number") else { return nil }
        guard let v = Double(s), v.isFinite else {
            error(f.path(key), n, "expected a number", value: s, hint: "e.g. 5 or 0.5")
            return nil
        }
        guard v > low, v <= high else {
            error(f.path(key), n, "out of range", value: s, hint: "use a number above \(DurationText.number(low)) and at most \(DurationText.number(high))")
            return nil
        }
        return v
    }

    func bool(_ f: Fields, _ key: String) -> Bool? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "true or false") else { return nil }
        if let b = Self.boolValue(s) { return b }
        error(f.path(key), n, "expected true or false", value: s)
        return nil
    }

    static func boolValue(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    /// A duration in seconds, at least `minimum`.
    func duration(_ f: Fields, _ key: String, minimum: Double, maximum: Double = 86_400) -> Double? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a duration") else { return nil }
        guard let v = DurationText.seconds(s) else {
            error(f.path(key), n, "expected a duration", value: s, hint: "write seconds (10), or a number with ms, s, m or h (500ms, 10s, 2m, 1m30s)")
            return nil
        }
        guard v >= minimum else {
            error(f.path(key), n, "too short", value: s, hint: "use at least \(DurationText.format(minimum))")
            return nil
        }
        guard v <= maximum else {
            error(f.path(key), n, "too long", value: s, hint: "use at most \(DurationText.format(maximum))")
            return nil
        }
        return v
    }

    /// One of `options`, with a suggestion when it is near one.
    func choice(_ f: Fields, _ key: String, _ options: [String]) -> String? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "one of \(options.joined(separator: ", "))") else { return nil }
        if options.contains(s) { return s }
        let list = "one of \(options.joined(separator: ", "))"
        if let near = Suggestion.nearest(to: s, among: options) {
            error(f.path(key), n, "not a known value", value: s, hint: "did you mean '\(near)'? (\(list))")
        } else {
            error(f.path(key), n, "not a known value", value: s, hint: "use \(list)")
        }
        return nil
    }

    /// A file path, absolute or made absolute against the config file's directory.
    func path(_ f: Fields, _ key: String) -> String? {
        guard let s = string(f, key) else { return nil }
        return resolve(s)
    }

    func resolve(_ p: String) -> String {
        guard let base = baseDirectory else { return p }
        return PathText.absolute(p, base: base)
    }

    /// A name used as a topic level: `[a-z0-9_-]{1,64}`.
    func name(_ s: String, _ path: String, _ node: Node?, what: String) -> Bool {
        guard Names.isValidName(s) else {
            let fixed = DaemonConfiguration.sanitizedNodeId(hostname: s.replacingOccurrences(of: ".", with: "-"))
            error(path, node, "not a usable \(what): use 1 to 64 characters of a-z, 0-9, '_' and '-' (it appears in MQTT topics)",
                  value: s, hint: "e.g. '\(fixed)'")
            return false
        }
        return true
    }

    /// Why `s` cannot start a topic, or nil.
    static func topicProblem(_ s: String) -> String? {
        if s.isEmpty { return "must not be empty" }
        if s.contains("+") || s.contains("#") { return "must not contain the wildcards '+' or '#'" }
        if s.contains("\0") { return "must not contain NUL" }
        if s.hasPrefix("$") { return "must not start with '$' (brokers reserve those topics)" }
        if s.hasPrefix("/") || s.hasSuffix("/") || s.contains("//") { return "must not start or end with '/' or have empty levels" }
        return nil
    }

    func topic(_ f: Fields, _ key: String) -> String? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a topic") else { return nil }
        if let why = Self.topicProblem(s) {
            error(f.path(key), n, "not a usable topic prefix: \(why)", value: s, hint: "e.g. 'ocellus' or 'home/ocellus'")
            return nil
        }
        return s
    }

    // MARK: - The file

    func readFile(_ root: Node?, hostname: String) -> DaemonConfiguration {
        let top = fields(root, path: "", allowed: Schema.top)
        var nodeId = DaemonConfiguration.sanitizedNodeId(hostname: hostname)
        if let s = string(top, "node_id"), name(s, "node_id", top["node_id"], what: "node id") { nodeId = s }
        var level = DaemonConfiguration.Defaults.logLevel
        if let s = choice(top, "log_level", Logger.Level.allCases.map(\.rawValue)), let l = Logger.Level(rawValue: s) { level = l }

        let broker = readBroker(top["broker"], nodeId: nodeId)
        let model = readModel(top["model"], present: top.nodes["model"] != nil)
        let cameras = readCameras(top["cameras"], written: top.nodes["cameras"])

        let h = fields(top["health"], path: "health", allowed: Schema.health)
        let health = HealthConfiguration(interval: duration(h, "interval", minimum: 1) ?? DaemonConfiguration.Defaults.healthInterval)

        let ha = fields(top["homeassistant"], path: "homeassistant", allowed: Schema.homeAssistant)
        let homeAssistant = HomeAssistantConfiguration(
            discovery: bool(ha, "discovery") ?? true,
            discoveryPrefix: topic(ha, "discovery_prefix") ?? DaemonConfiguration.Defaults.discoveryPrefix)

        let o = fields(top["outbox"], path: "outbox", allowed: Schema.outbox)
        let outbox = OutboxConfiguration(capacity: int(o, "capacity", 1...1_000_000, unit: " messages") ?? DaemonConfiguration.Defaults.outboxCapacity)

        return DaemonConfiguration(nodeId: nodeId, logLevel: level, broker: broker, model: model, cameras: cameras,
                                   health: health, homeAssistant: homeAssistant, outbox: outbox,
                                   warnings: issues.filter { $0.severity == .warning }, positions: positions)
    }

    // MARK: - Broker

    func readBroker(_ node: Node?, nodeId: String) -> BrokerConfiguration {
        let f = fields(node, path: "broker", allowed: Schema.broker)
        typealias D = DaemonConfiguration.Defaults
        var host = D.brokerHost
        if let h = string(f, "host") {
            let lower = h.lowercased()
            if let scheme = ["mqtt://", "mqtts://", "tcp://", "ssl://", "ws://", "wss://"].first(where: { lower.hasPrefix($0) }) {
                error(f.path("host"), f["host"], "a host name, not a URL", value: h,
                      hint: "write only the name or address (drop '\(scheme)'); the port goes in `port`, TLS in `tls`")
            } else if h.contains(" ") || h.contains("/") {
                error(f.path("host"), f["host"], "not a host name or address", value: h)
            } else if h.filter({ $0 == ":" }).count == 1 {
                error(f.path("host"), f["host"], "a host name, not host:port", value: h, hint: "put the port in `port`")
            } else {
                host = h
            }
        }

        let protocolVersion = choice(f, "protocol", MQTTProtocolChoice.allCases.map(\.rawValue)).flatMap(MQTTProtocolChoice.init) ?? D.protocolVersion
        let tls = readTLS(f["tls"], path: f.path("tls"))
        let port = int(f, "port", 1...65535) ?? (tls == nil ? D.brokerPort : D.brokerTLSPort)
        let username = string(f, "username")

        var password: SecretFile?
        let pf = path(f, "password_file")
        let pc = credential(f, "password_credential")
        if pf != nil, pc != nil {
            error(f.path("password_credential"), f["password_credential"], "give password_file or password_credential, not both",
                  hint: "keep password_credential under systemd (LoadCredential=), password_file elsewhere")
        } else if let pf {
            password = .file(path: pf, keyPath: f.path("password_file"))
        } else if let pc {
            password = .credential(name: pc, keyPath: f.path("password_credential"))
        }
        if let password, username == nil, protocolVersion != .v5 {
            let key = password.keyPath.split(separator: ".").last.map(String.init) ?? ""
            error(password.keyPath, f[key], "a password needs a username (MQTT 3.1.1 sends a password only after a user name)",
                  hint: "add `username`, or set `protocol: 5`")
        }

        var clientId = "ocellus-\(nodeId)"
        if let c = string(f, "client_id") {
            if c.utf8.count > 65535 || c.contains("\0") {
                error(f.path("client_id"), f["client_id"], "must be at most 65535 bytes without NUL", value: String(c.prefix(40)))
            } else {
                clientId = c
            }
        }
        return BrokerConfiguration(
            host: host, port: port, tls: tls, username: username, password: password, clientId: clientId,
            topicPrefix: topic(f, "topic_prefix") ?? D.topicPrefix,
            qos: int(f, "qos", 0...2) ?? D.qos,
            keepalive: keepalive(f) ?? D.keepalive,
            protocolVersion: protocolVersion)
    }

    private func keepalive(_ f: Fields) -> Int? {
        guard let v = duration(f, "keepalive", minimum: 5, maximum: 65535) else { return nil }
        guard v == v.rounded() else {
            error(f.path("keepalive"), f["keepalive"], "must be whole seconds (MQTT sends it as seconds)", value: DurationText.format(v))
            return nil
        }
        return Int(v)
    }

    /// A systemd credential name: non-empty, no '/', not '.' or '..'.
    func credential(_ f: Fields, _ key: String) -> String? {
        guard let s = string(f, key) else { return nil }
        guard !s.contains("/"), s != ".", s != "..", s.utf8.count <= 255 else {
            error(f.path(key), f[key], "not a systemd credential name (a file name under $CREDENTIALS_DIRECTORY)", value: s,
                  hint: "use the NAME of LoadCredential=NAME:PATH in the unit, e.g. 'mqtt_password'; for a path use the *_file key")
            return nil
        }
        return s
    }

    func readTLS(_ node: Node?, path: String) -> TLSConfiguration? {
        guard let node else { return nil }
        if case let .scalar(s) = node {
            if let b = Self.boolValue(s.string) { return b ? TLSConfiguration() : nil }
            error(path, node, "expected true, false or a mapping (ca_file, cert_file, key_file, key_credential, insecure)", value: s.string)
            return nil
        }
        let f = fields(node, path: path, allowed: Schema.tls, section: "broker.tls")
        var tls = TLSConfiguration()
        tls.caFile = self.path(f, "ca_file")
        tls.certFile = self.path(f, "cert_file")
        let kf = self.path(f, "key_file"), kc = credential(f, "key_credential")
        if kf != nil, kc != nil {
            error(f.path("key_credential"), f["key_credential"], "give key_file or key_credential, not both")
        } else if let kf {
            tls.key = .file(path: kf, keyPath: f.path("key_file"))
        } else if let kc {
            tls.key = .credential(name: kc, keyPath: f.path("key_credential"))
        }
        if tls.certFile != nil, tls.key == nil, f.nodes["key_file"] == nil, f.nodes["key_credential"] == nil {
            error(f.path("cert_file"), f["cert_file"], "a client certificate needs its private key", hint: "add `key_file` or `key_credential`")
        }
        if let key = tls.key, tls.certFile == nil, f.nodes["cert_file"] == nil {
            error(key.keyPath, f[key.keyPath.split(separator: ".").last.map(String.init) ?? ""], "a private key without its client certificate",
                  hint: "add `cert_file`, or remove the key")
        }
        if let insecure = bool(f, "insecure") {
            tls.insecure = insecure
            if insecure {
                warn(f.path("insecure"), f["insecure"], "the broker's host name is not checked against its certificate",
                     hint: "anyone on the path can impersonate the broker; give the right `ca_file` and set insecure: false")
            }
        }
        return tls
    }

    // MARK: - Model

    func readModel(_ node: Node?, present: Bool) -> ModelConfiguration {
        let f = fields(node, path: "model", allowed: Schema.model)
        typealias D = DaemonConfiguration.Defaults
        var model = ModelConfiguration(path: "", precision: nil, threads: nil, memoryBudget: nil,
                                       maxNewTokens: D.maxNewTokens, numBeams: nil, maxPromptTokens: D.maxPromptTokens, imageSize: nil)
        var isMapping = node == nil
        if let node, case .mapping = node { isMapping = true }
        if let p = path(f, "path") {
            model.path = p
        } else if isMapping, f["path"] == nil {
            error(present ? "model.path" : "model", node, present ? "missing: the model file is required" : "missing section: the model file is required",
                  hint: "add `model: { path: /var/lib/ocellus/florence2-base-int8.gguf }` (a file from Quantization/convert.py)")
        }
        model.precision = choice(f, "precision", ModelPrecision.allCases.map(\.rawValue)).flatMap(ModelPrecision.init)
        model.threads = int(f, "threads", 1...1024)
        if let n = f["memory_budget"], let s = scalar(n, f.path("memory_budget"), expected: "a size") {
            if let b = ByteSizeText.bytes(s) {
                model.memoryBudget = b
            } else {
                error(f.path("memory_budget"), n, "expected a size", value: s, hint: "write bytes, or a number with a unit: 512MiB, 1.5GB, 2G")
            }
        }
        model.maxNewTokens = int(f, "max_new_tokens", 1...4096) ?? D.maxNewTokens
        model.numBeams = int(f, "num_beams", 1...16)
        model.maxPromptTokens = int(f, "max_prompt_tokens", 2...4096) ?? D.maxPromptTokens
        model.imageSize = size(f, "image_size", 32...4096)
        return model
    }

    func size(_ f: Fields, _ key: String, _ range: ClosedRange<Int>) -> FrameSize? {
        guard let n = f[key], let s = scalar(n, f.path(key), expected: "a size WxH") else { return nil }
        guard let v = FrameSize(text: s) else {
            error(f.path(key), n, "expected WIDTHxHEIGHT", value: s, hint: "e.g. 640x480")
            return nil
        }
        guard range.contains(v.width), range.contains(v.height) else {
            error(f.path(key), n, "out of range", value: s, hint: "width and height from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return v
    }

    // MARK: - Cameras

    /// `node` is nil when absent or null; `raw` is what was written (nil only when absent).
    func readCameras(_ node: Node?, written raw: Node?) -> [CameraConfiguration] {
        let example = "e.g. `cameras: { porch: { source: /dev/v4l/by-id/usb-...-video-index0, tasks: [ { task: <CAPTION>, interval: 10s } ] } }`"
        guard let node else {
            error("cameras", raw, raw == nil ? "missing section: at least one camera is required" : "no camera configured", hint: example)
            return []
        }
        guard case let .mapping(m) = node else {
            error("cameras", node, "expected a mapping of camera names to cameras, found \(Self.kind(node))", hint: example)
            return []
        }
        if m.count == 0 { error("cameras", node, "no camera configured", hint: example) }
        var cameras: [CameraConfiguration] = []
        var devices: [String: String] = [:]
        for (k, v) in m {
            guard case let .scalar(ks) = k else {
                error("cameras", k, "a camera name must be a plain name, found \(Self.kind(k))")
                continue
            }
            let name = ks.string
            let path = "cameras.\(name)"
            record(path, v)
            _ = self.name(name, path, k, what: "camera name")
            guard let cam = readCamera(v, name: name, path: path) else { continue }
            if case let .device(d) = cam.source {
                if let other = devices[d] {
                    error("\(path).source", v.mapping?["source"],
                          "the same device as camera '\(other)' (a V4L2 device streams to one reader)", value: d)
                }
                devices[d] = name
            }
            cameras.append(cam)
        }
        if !cameras.isEmpty, !cameras.contains(where: \.enabled) {
            warn("cameras", node, "every camera is disabled: the daemon will publish only health")
        }
        return cameras
    }

    func readCamera(_ node: Node, name: String, path: String) -> CameraConfiguration? {
        guard case .mapping = node else {
            error(path, node, "expected a camera (source, size, fps, enabled, tasks), found \(Self.kind(node))")
            return nil
        }
        let f = fields(node, path: path, allowed: Schema.camera)
        typealias D = DaemonConfiguration.Defaults
        var source = CameraSource.pattern
        if let s = string(f, "source") {
            source = cameraSource(s, f)
        } else if f.nodes["source"] == nil || f["source"] == nil {
            error(f.path("source"), node, "missing: where frames come from",
                  hint: "a device (/dev/v4l/by-id/...), an image file or folder, or `pattern` for the synthetic camera")
        }
        let size = self.size(f, "size", 16...8192) ?? D.cameraSize
        let fps = number(f, "fps", above: 0, atMost: 240) ?? D.cameraFPS
        let enabled = bool(f, "enabled") ?? true
        var tasks: [TaskConfiguration] = []
        let tp = f.path("tasks")
        if let tn = f["tasks"] {
            if case let .sequence(seq) = tn {
                var names: [String: Int] = [:]
                for (i, item) in seq.enumerated() {
                    let ip = "\(tp)[\(i)]"
                    record(ip, item)
                    guard let t = readTask(item, path: ip, fps: fps) else { continue }
                    if let j = names[t.name] {
                        error("\(ip).name", item, "two tasks of this camera publish on the same topic level '\(t.name)' (tasks[\(j)] too)",
                              hint: "give one of them a different `name:`")
                    } else {
                        names[t.name] = i
                    }
                    tasks.append(t)
                }
                if seq.count == 0, enabled { error(tp, tn, "an enabled camera needs at least one task", hint: "e.g. `- task: <CAPTION>`") }
            } else {
                error(tp, tn, "expected a list of tasks (lines starting with '- '), found \(Self.kind(tn))",
                      hint: "e.g. `tasks: [ { task: <CAPTION>, interval: 10s } ]`")
            }
        } else if enabled {
            error(tp, node, "missing: an enabled camera needs at least one task", hint: "e.g. `tasks: [ { task: <CAPTION>, interval: 10s } ]`")
        }
        return CameraConfiguration(name: name, source: source, size: size, fps: fps, enabled: enabled, tasks: tasks)
    }

    private func cameraSource(_ s: String, _ f: Fields) -> CameraSource {
        if s == "pattern" { return .pattern }
        if s.hasPrefix("/dev/") {
            let last = (s as NSString).lastPathComponent
            if last.hasPrefix("video"), Int(last.dropFirst(5)) != nil {
                warn(f.path("source"), f["source"], "video device numbers can change between boots and replugs", value: s,
                     hint: "name the camera by /dev/v4l/by-id/... (ls -l /dev/v4l/by-id/)")
            }
            return .device(s)
        }
        if Suggestion.nearest(to: s, among: ["pattern"]) != nil, !s.contains("/"), !s.contains(".") {
            error(f.path("source"), f["source"], "not a device, file or folder", value: s, hint: "did you mean 'pattern'?")
        }
        let p = resolve(s)
        let ext = (p as NSString).pathExtension.lowercased()
        return CameraSource.imageExtensions.contains(ext) ? .imageFile(p) : .imageFolder(p)
    }

    // MARK: - Tasks

    func readTask(_ node: Node, path: String, fps: Double) -> TaskConfiguration? {
        guard case .mapping = node else {
            error(path, node, "expected a task mapping, found \(Self.kind(node))", hint: "e.g. `- { task: <OD>, interval: 5s }`")
            return nil
        }
        let f = fields(node, path: path, allowed: Schema.task)
        guard let tn = f["task"], let raw = scalar(tn, f.path("task"), expected: "a task token") else {
            if f.nodes["task"] == nil || f["task"] == nil {
                error(f.path("task"), node, "missing: which Florence-2 task to run", hint: "e.g. `task: <CAPTION>`")
            }
            return nil
        }
        let tokens = Florence2Task.allCases.map(\.token)
        guard let task = Florence2Task(rawValue: raw) else {
            let bare = raw.trimmingCharacters(in: CharacterSet(charactersIn: "<> ")).uppercased()
            let hint: String
            if let exact = Florence2Task(rawValue: "<\(bare)>") {
                hint = "write the token exactly: '\(exact.token)'"
            } else if let near = Suggestion.nearest(to: "<\(bare)>", among: tokens) {
                hint = "did you mean '\(near)'?"
            } else {
                hint = "use one of \(tokens.joined(separator: " "))"
            }
            error(f.path("task"), tn, "not a Florence-2 task", value: raw, hint: hint)
            return nil
        }
        var ok = true
        var text: String?
        let textPath = f.path("text")
        if let n = f["text"] {
            if let s = scalar(n, textPath, expected: "text") {
                let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
                text = t.isEmpty ? nil : t
            } else {
                ok = false
            }
        }
        if ok {
            do {
                _ = try task.prompt(text: text)
            } catch let e as Florence2TaskError {
                ok = false
                switch e {
                case .unexpectedInput:
                    error(textPath, f["text"], "\(task.token) takes no text", value: text,
                          hint: "remove `text`, or use a task that takes text (<CAPTION_TO_PHRASE_GROUNDING>, <OPEN_VOCABULARY_DETECTION>, <REFERRING_EXPRESSION_SEGMENTATION>)")
                case .missingInput:
                    let what = task.input == .region ? "a region: four <loc_N> tokens, e.g. '<loc_100><loc_200><loc_600><loc_900>'"
                                                     : "the text to look for, e.g. 'a person. a car.'"
                    error(textPath, f["text"] ?? node, "\(task.token) needs `text`", hint: "give \(what)")
                case .invalidRegion:
                    error(textPath, f["text"], "\(task.token) needs a region of four <loc_N> tokens with N in 0...999", value: text,
                          hint: "e.g. '<loc_100><loc_200><loc_600><loc_900>' (x1 y1 x2 y2 on a 1000x1000 grid)")
                default:
                    error(textPath, f["text"], "\(e)", value: text)
                }
            } catch {
                ok = false
                self.error(textPath, f["text"], "\(error)", value: text)
            }
        }
        let interval = duration(f, "interval", minimum: DaemonConfiguration.Defaults.minTaskInterval) ?? DaemonConfiguration.Defaults.taskInterval
        if interval < 1 / fps {
            warn(f.path("interval"), f["interval"] ?? node,
                 "shorter than the camera's frame period (\(DurationText.format(1 / fps)) at \(DurationText.number(fps)) fps): the task runs at most once per frame",
                 value: DurationText.format(interval))
        }
        let retain = bool(f, "retain")
        var name = TaskConfiguration.defaultName(task)
        if let s = string(f, "name") {
            if self.name(s, f.path("name"), f["name"], what: "task name") { name = s } else { ok = false }
        }
        guard ok else { return nil }
        return TaskConfiguration(name: name, task: task, text: text, interval: interval, retain: retain)
    }
}

// MARK: - Paths

/// Lexical path arithmetic (no file system access, no symlinks resolved).
enum PathText {
    /// `p` if absolute, else `base/p`, with `.` and `..` components folded.
    static func absolute(_ p: String, base: String) -> String {
        let joined = p.hasPrefix("/") ? p : base + "/" + p
        var parts: [Substring] = []
        for c in joined.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }
}
