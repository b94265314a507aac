// The daemon's configuration (issue 5): the schema of `/etc/ocellus/ocellus.yaml`, its defaults and
// the values the daemon uses. Sections follow Frigate's config (one mapping per concern, snake_case
// keys); parsing and validation are in ConfigurationParser.swift, units in ConfigurationValues.swift,
// reload classification in ConfigurationDiff.swift, file checks in ConfigurationCheck.swift.
import Florence2
import Foundation
import Logging

// MARK: - The whole file

/// One validated configuration file. Every optional key has its default filled in here, except the
/// few whose default depends on the machine or the model at start-up (`model.threads`,
/// `model.num_beams`, `model.image_size`); those stay `nil` and `ModelConfiguration.limits` fills them.
public struct DaemonConfiguration: Sendable, Equatable {
    /// `node_id`: names this box in topics and in Home Assistant (default: the host name, lower-cased,
    /// other characters than `[a-z0-9_-]` replaced by `-`).
    public var nodeId: String
    /// `log_level`: `trace`, `debug`, `info` (default), `notice`, `warning`, `error`, `critical`.
    public var logLevel: Logger.Level
    /// `broker`: the MQTT broker.
    public var broker: BrokerConfiguration
    /// `model`: the Florence-2 model file and its limits.
    public var model: ModelConfiguration
    /// `cameras`: in file order.
    public var cameras: [CameraConfiguration]
    /// `health`: the health topic.
    public var health: HealthConfiguration
    /// `homeassistant`: MQTT discovery.
    public var homeAssistant: HomeAssistantConfiguration
    /// `outbox`: the bounded queue of messages waiting for the broker.
    public var outbox: OutboxConfiguration
    /// Problems that do not stop the daemon (an insecure TLS setting, an interval shorter than the
    /// frame period, ...), with their key paths.
    public var warnings: [ConfigurationIssue]
    /// Where each key's value was written (`cameras.porch.source` → line 12, column 13), so that
    /// later checks can point into the file too.
    public var positions: [String: SourcePosition]

    /// Equal settings: `warnings` and `positions` are not compared (moving a key or adding a
    /// comment changes nothing the daemon does).
    public static func == (l: DaemonConfiguration, r: DaemonConfiguration) -> Bool {
        l.nodeId == r.nodeId && l.logLevel == r.logLevel && l.broker == r.broker && l.model == r.model
            && l.cameras == r.cameras && l.health == r.health && l.homeAssistant == r.homeAssistant && l.outbox == r.outbox
    }

    /// The camera called `name`, if any.
    public func camera(named name: String) -> CameraConfiguration? { cameras.first { $0.name == name } }

    /// The topic root of this node: `<topic_prefix>/<node_id>`.
    public var topicRoot: String { "\(broker.topicPrefix)/\(nodeId)" }
}

/// A 1-based line and column in a configuration file.
public struct SourcePosition: Sendable, Equatable {
    /// Line, from 1.
    public var line: Int
    /// Column, from 1.
    public var column: Int

    /// A position.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

// MARK: - Broker

/// `broker`: where results go and how the daemon logs in.
public struct BrokerConfiguration: Sendable, Equatable {
    /// `host`: name or address of the broker (default `127.0.0.1`, a broker on this box).
    public var host: String
    /// `port`: default 1883, or 8883 when `tls` is given.
    public var port: Int
    /// `tls`: nil for plain TCP.
    public var tls: TLSConfiguration?
    /// `username`: nil to connect anonymously.
    public var username: String?
    /// `password_file` or `password_credential`: nil for no password.
    public var password: SecretFile?
    /// `client_id`: default `ocellus-<node_id>`.
    public var clientId: String
    /// `topic_prefix`: the first topic level (default `ocellus`).
    public var topicPrefix: String
    /// `qos`: 0, 1 (default) or 2 for results and state.
    public var qos: Int
    /// `keepalive`: seconds between pings when idle (default 60; 5...65535).
    public var keepalive: Int
    /// `protocol`: `auto` (default: MQTT 5, falling back to 3.1.1), `5` or `3.1.1`.
    public var protocolVersion: MQTTProtocolChoice

    /// The password, read now from its file or systemd credential (one trailing newline dropped),
    /// or nil when none is configured.
    public func readPassword(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        guard let password else { return nil }
        let path = try password.resolvedPath(environment: environment)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(source: path, issues: [ConfigurationIssue(
                path: password.keyPath, message: "cannot read the password", value: path,
                hint: "check that the file exists and that the daemon's user may read it")])
        }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\r\n") { text.removeLast(2) } else if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}

/// `broker.tls`: TLS to the broker. Present (even empty, or `tls: true`) means TLS on.
public struct TLSConfiguration: Sendable, Equatable {
    /// `ca_file`: the CA bundle that signs the broker's certificate (nil: the system's CAs).
    public var caFile: String?
    /// `cert_file`: a client certificate (with `key_file` or `key_credential`), nil for none.
    public var certFile: String?
    /// `key_file` or `key_credential`: the client certificate's private key.
    public var key: SecretFile?
    /// `insecure`: skip the broker host-name check (default false; a warning when true).
    public var insecure: Bool

    /// TLS with the system's CAs, no client certificate, host name checked.
    public init(caFile: String? = nil, certFile: String? = nil, key: SecretFile? = nil, insecure: Bool = false) {
        self.caFile = caFile
        self.certFile = certFile
        self.key = key
        self.insecure = insecure
    }
}

/// A secret that lives outside the YAML: a file, or a systemd credential (`LoadCredential=NAME:PATH`
/// in the unit, read from `$CREDENTIALS_DIRECTORY/NAME` at run time).
public enum SecretFile: Sendable, Equatable, CustomStringConvertible {
    /// A file path (made absolute against the config file's directory).
    case file(path: String, keyPath: String)
    /// The name of a systemd credential.
    case credential(name: String, keyPath: String)

    /// The key path it came from (`broker.password_file`, ...), for messages.
    public var keyPath: String {
        switch self {
        case let .file(_, k), let .credential(_, k): return k
        }
    }

    /// The file to read: the path itself, or `$CREDENTIALS_DIRECTORY/NAME`; an unset
    /// `CREDENTIALS_DIRECTORY` is an error that says how systemd provides it.
    public func resolvedPath(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        switch self {
        case let .file(path, _): return path
        case let .credential(name, keyPath):
            guard let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty else {
                throw ConfigurationError(source: "environment", issues: [ConfigurationIssue(
                    path: keyPath, message: "$CREDENTIALS_DIRECTORY is not set, so the credential cannot be read", value: name,
                    hint: "run the daemon under systemd with LoadCredential=\(name):/etc/ocellus/credentials/\(name), or use a *_file key instead")])
            }
            return (dir as NSString).appendingPathComponent(name)
        }
    }

    /// `file PATH` or `systemd credential NAME` (never the secret).
    public var description: String {
        switch self {
        case let .file(path, _): return "file \(path)"
        case let .credential(name, _): return "systemd credential \(name)"
        }
    }
}

/// `broker.protocol`.
public enum MQTTProtocolChoice: String, Sendable, Equatable, CaseIterable {
    /// MQTT 5 where the broker speaks it, else 3.1.1.
    case auto
    /// MQTT 5 only.
    case v5 = "5"
    /// MQTT 3.1.1 only.
    case v311 = "3.1.1"
}

// MARK: - Model

/// `model.precision`: how the file's linear weights are stored (`ocellus.precision` in the file).
public enum ModelPrecision: String, Sendable, Equatable, CaseIterable {
    /// int8 linear weights (the default conversion).
    case int8
    /// fp32 everywhere.
    case fp32
}

/// `model`: the Florence-2 model file and the limits its memory is planned for.
public struct ModelConfiguration: Sendable, Equatable {
    /// `path`: the `.gguf` file from `Quantization/convert.py` (required).
    public var path: String
    /// `precision`: when given, the file must hold this precision.
    public var precision: ModelPrecision?
    /// `threads`: inference threads (nil: all cores).
    public var threads: Int?
    /// `memory_budget`: bytes the model may plan for (weights, arena, KV caches); nil: no limit.
    public var memoryBudget: Int?
    /// `max_new_tokens`: generated tokens per result at most (default 256).
    public var maxNewTokens: Int
    /// `num_beams`: beam search width (nil: the model's generation config, else 3; 1 = greedy).
    public var numBeams: Int?
    /// `max_prompt_tokens`: prompt tokens at most, `<s>` and `</s>` included (default 256).
    public var maxPromptTokens: Int
    /// `image_size`: the vision tower's input `WxH` (nil: the model's, 768x768 for Florence-2).
    public var imageSize: FrameSize?

    /// The threads to run with: `threads`, or every core of this machine.
    public var resolvedThreads: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }

    /// The memory-planning limits for a model with configuration `config`.
    public func limits(for config: Florence2Config) -> Florence2Limits {
        var l = Florence2Limits(config: config, threads: resolvedThreads)
        l.maxNewTokens = maxNewTokens
        l.maxPromptTokens = maxPromptTokens
        if let b = numBeams { l.numBeams = b }
        if let s = imageSize { l.imageWidth = s.width; l.imageHeight = s.height }
        return l
    }
}

// MARK: - Cameras

/// A `WxH` size in pixels.
public struct FrameSize: Sendable, Equatable, CustomStringConvertible {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int

    /// A size.
    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    /// `WIDTHxHEIGHT`.
    public var description: String { "\(width)x\(height)" }
}

/// `cameras.<name>.source`: where frames come from.
public enum CameraSource: Sendable, Equatable, CustomStringConvertible {
    /// `pattern`: the synthetic test pattern (no hardware).
    case pattern
    /// A V4L2 device, best named by `/dev/v4l/by-id/...` (video numbers change between boots).
    case device(String)
    /// One image file (JPEG, PNG or PPM), served as every frame.
    case imageFile(String)
    /// A folder of image files, served in name order, round and round.
    case imageFolder(String)

    /// The file extensions an image source may have.
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "ppm"]

    /// `pattern`, `device PATH`, `image PATH` or `folder PATH`.
    public var description: String {
        switch self {
        case .pattern: return "pattern"
        case let .device(p): return "device \(p)"
        case let .imageFile(p): return "image \(p)"
        case let .imageFolder(p): return "folder \(p)"
        }
    }
}

/// `cameras.<name>`: one camera and what to ask of its frames.
public struct CameraConfiguration: Sendable, Equatable {
    /// The key under `cameras` (`[a-z0-9_-]+`; it appears in topics).
    public var name: String
    /// `source` (required).
    public var source: CameraSource
    /// `size`: the capture size asked of the device or generated by the pattern (default 640x480).
    public var size: FrameSize
    /// `fps`: frames per second asked of the source (default 5).
    public var fps: Double
    /// `enabled`: false keeps the camera configured but closed (status `disabled`); default true.
    public var enabled: Bool
    /// `tasks`: what to run on its frames, in file order.
    public var tasks: [TaskConfiguration]

    /// The task called `name`, if any.
    public func task(named name: String) -> TaskConfiguration? { tasks.first { $0.name == name } }
}

/// `cameras.<name>.tasks[i]`: one Florence-2 task run on a camera every `interval` seconds.
public struct TaskConfiguration: Sendable, Equatable {
    /// `name`: the task's topic level, unique per camera (default: the task token in lower case
    /// without brackets, e.g. `caption`, `od`).
    public var name: String
    /// `task`: one of the 15 Florence-2 task tokens.
    public var task: Florence2Task
    /// `text`: the task's input (phrases, an expression, or four `<loc_N>` tokens); nil for tasks
    /// that take none.
    public var text: String?
    /// `interval`: seconds between runs (default 10, at least 0.1).
    public var interval: Double
    /// `retain`: override whether results are published retained (nil: the daemon's default,
    /// `retainsByDefault`).
    public var retain: Bool?

    /// The prompt the model sees. A parsed configuration's tasks always have one; a task built by
    /// hand with unusable text throws `Florence2TaskError`.
    public func prompt() throws -> String { try task.prompt(text: text) }

    /// Whether results are retained: `retain`, else true for text results (captions, OCR) and false
    /// for detections and grounding, as issue 5 specifies.
    public var retainsResults: Bool { retain ?? Self.retainsByDefault(task) }

    /// The default retain flag of a task's results: text results are state, boxes are events.
    public static func retainsByDefault(_ task: Florence2Task) -> Bool { task.resultKind == .pureText }

    /// The default `name` of a task: `<CAPTION_TO_PHRASE_GROUNDING>` → `caption_to_phrase_grounding`.
    public static func defaultName(_ task: Florence2Task) -> String {
        String(task.token.dropFirst().dropLast()).lowercased()
    }
}

// MARK: - Health, Home Assistant, outbox

/// `health`.
public struct HealthConfiguration: Sendable, Equatable {
    /// `interval`: seconds between health messages and `STATUS=` updates (default 30).
    public var interval: Double
}

/// `homeassistant`.
public struct HomeAssistantConfiguration: Sendable, Equatable {
    /// `discovery`: publish device-based MQTT discovery (default true).
    public var discovery: Bool
    /// `discovery_prefix`: Home Assistant's discovery prefix (default `homeassistant`).
    public var discoveryPrefix: String
}

/// `outbox`.
public struct OutboxConfiguration: Sendable, Equatable {
    /// `capacity`: messages held while the broker is away (default 1000); when full the oldest is
    /// dropped and counted.
    public var capacity: Int
}

// MARK: - Defaults

extension DaemonConfiguration {
    /// The defaults of every key that has one, in one place (the docs in Configs/ repeat them; a test
    /// checks that `Configs/ocellus.yaml` states these values).
    public enum Defaults {
        /// `log_level`.
        public static let logLevel = Logger.Level.info
        /// `broker.host`.
        public static let brokerHost = "127.0.0.1"
        /// `broker.port` without TLS.
        public static let brokerPort = 1883
        /// `broker.port` with TLS.
        public static let brokerTLSPort = 8883
        /// `broker.topic_prefix`.
        public static let topicPrefix = "ocellus"
        /// `broker.qos`.
        public static let qos = 1
        /// `broker.keepalive` in seconds.
        public static let keepalive = 60
        /// `broker.protocol`.
        public static let protocolVersion = MQTTProtocolChoice.auto
        /// `model.max_new_tokens`.
        public static let maxNewTokens = 256
        /// `model.max_prompt_tokens`.
        public static let maxPromptTokens = 256
        /// `cameras.<name>.size`.
        public static let cameraSize = FrameSize(width: 640, height: 480)
        /// `cameras.<name>.fps`.
        public static let cameraFPS = 5.0
        /// `cameras.<name>.tasks[i].interval` in seconds.
        public static let taskInterval = 10.0
        /// The shortest `interval` accepted, in seconds.
        public static let minTaskInterval = 0.1
        /// `health.interval` in seconds.
        public static let healthInterval = 30.0
        /// `homeassistant.discovery_prefix`.
        public static let discoveryPrefix = "homeassistant"
        /// `outbox.capacity`.
        public static let outboxCapacity = 1000
    }

    /// `node_id`'s default for a host name: the first label, lower-cased, runs of characters outside
    /// `[a-z0-9_-]` replaced by one `-`, leading and trailing `-` dropped; `ocellus` if nothing is left.
    public static func sanitizedNodeId(hostname: String) -> String {
        let first = hostname.split(separator: ".", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var out = ""
        var pendingDash = false
        for ch in first.lowercased().unicodeScalars {
            if Names.isNameScalar(ch) {
                if pendingDash && !out.isEmpty { out.append("-") }
                pendingDash = false
                out.unicodeScalars.append(ch)
            } else {
                pendingDash = true
            }
        }
        while out.hasSuffix("-") { out.removeLast() }
        while out.hasPrefix("-") { out.removeFirst() }
        return out.isEmpty ? "ocellus" : out
    }

    /// This machine's host name (`gethostname`).
    public static func currentHostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "ocellus" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The character rules of names that appear in topics.
enum Names {
    /// `[a-z0-9_-]`.
    static func isNameScalar(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "_" || c == "-"
    }

    /// Non-empty, at most 64 characters of `[a-z0-9_-]`.
    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.count <= 64 && s.unicodeScalars.allSatisfy(isNameScalar)
    }
}
