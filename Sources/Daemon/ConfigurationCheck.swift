// `ocellus check` and the daemon's start-up checks beyond the YAML itself: the files a configuration
// names exist and are readable (model, password, TLS, image sources), the model file holds the
// configured precision, and its memory plan fits the limits and the budget. Also the summary the
// check prints.
import Capture
import Compute
import Florence2
import Foundation

// MARK: - Check

/// The result of checking a parsed configuration against the machine it will run on.
public struct ConfigurationCheck: Sendable {
    /// What the model file says, when it could be opened.
    public struct ModelFacts: Sendable, Equatable {
        /// `ocellus.precision` in the file (nil when absent).
        public var precision: String?
        /// The memory plan's total bytes (weights mapped, arena, KV caches) for the configured limits.
        public var planBytes: Int
        /// Bytes of weights in the file.
        public var weightBytes: Int
        /// The limits the plan was made for (beams and image size filled from the model).
        public var limits: Florence2Limits
    }

    /// The configuration checked.
    public let configuration: DaemonConfiguration
    /// The parser's warnings, then everything the file checks found.
    public private(set) var issues: [ConfigurationIssue]
    /// The model file's facts (nil when it could not be read).
    public private(set) var model: ModelFacts?

    /// Only the errors.
    public var errors: [ConfigurationIssue] { issues.filter { $0.severity == .error } }
    /// Only the warnings.
    public var warnings: [ConfigurationIssue] { issues.filter { $0.severity == .warning } }

    /// Checks every file `configuration` names. `environment` supplies `CREDENTIALS_DIRECTORY`;
    /// `cores` is this machine's core count (for the threads warning).
    public init(_ configuration: DaemonConfiguration,
                environment: [String: String] = ProcessInfo.processInfo.environment,
                cores: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.configuration = configuration
        self.issues = configuration.warnings
        self.model = nil
        checkModel(cores: cores)
        checkBroker(environment: environment)
        for c in configuration.cameras where c.enabled { checkSource(c) }
    }

    // MARK: Files

    private mutating func error(_ path: String, _ message: String, value: String? = nil, hint: String? = nil) {
        let at = configuration.positions[path]
        issues.append(ConfigurationIssue(severity: .error, path: path, line: at?.line, column: at?.column,
                                         message: message, value: value, hint: hint))
    }

    private mutating func warn(_ path: String, _ message: String, value: String? = nil, hint: String? = nil) {
        let at = configuration.positions[path]
        issues.append(ConfigurationIssue(severity: .warning, path: path, line: at?.line, column: at?.column,
                                         message: message, value: value, hint: hint))
    }

    /// `stat` of `path`, nil when it does not exist.
    private static func status(_ path: String) -> stat? {
        var st = stat()
        return stat(path, &st) == 0 ? st : nil
    }

    private static func isKind(_ st: stat, _ kind: mode_t) -> Bool { st.st_mode & S_IFMT == kind }

    /// A regular file that this process may read; reports an error at `key` otherwise.
    @discardableResult
    private mutating func readableFile(_ path: String, key: String, what: String) -> Bool {
        guard let st = Self.status(path) else {
            error(key, "the \(what) does not exist", value: path)
            return false
        }
        guard Self.isKind(st, S_IFREG) else {
            error(key, "the \(what) is not a regular file", value: path)
            return false
        }
        guard access(path, R_OK) == 0 else {
            error(key, "the \(what) is not readable by this user", value: path,
                  hint: "run the check as the daemon's user, or fix the file's owner and mode")
            return false
        }
        return true
    }

    /// A secret file: readable, not empty, and (warning) not readable by group or others.
    private mutating func secret(_ s: SecretFile, environment: [String: String], what: String) {
        let path: String
        do {
            path = try s.resolvedPath(environment: environment)
        } catch {
            if case let .credential(name, keyPath) = s {
                warn(keyPath, "not checked: $CREDENTIALS_DIRECTORY is unset (systemd sets it for the service)", value: name,
                     hint: "the unit needs LoadCredential=\(name):/etc/ocellus/credentials/\(name)")
            }
            return
        }
        guard readableFile(path, key: s.keyPath, what: what), let st = Self.status(path) else { return }
        if st.st_size == 0 { error(s.keyPath, "the \(what) is empty", value: path) }
        if case .file = s, st.st_mode & 0o077 != 0 {
            warn(s.keyPath, "the \(what) can be read by other users", value: path, hint: "chmod 600 \(path)")
        }
    }

    // MARK: Model

    private mutating func checkModel(cores: Int) {
        let m = configuration.model
        if let t = m.threads, t > cores {
            warn("model.threads", "more threads than this machine's \(cores) cores slows inference down", value: "\(t)")
        }
        guard readableFile(m.path, key: "model.path", what: "model file") else { return }
        let file: GGUFFile
        do {
            file = try GGUFFile(path: m.path)
        } catch {
            self.error("model.path", "not a usable model file: \(error)", value: m.path,
                       hint: "convert a checkpoint with `python3 Quantization/convert.py HF_DIR OUT.gguf`")
            return
        }
        let have: String?
        do { have = try file.stringIfPresent("ocellus.precision") } catch {
            self.error("model.path", "\(error)", value: m.path)
            return
        }
        if let want = m.precision {
            if let have {
                if have != want.rawValue {
                    error("model.precision", "the model file holds \(have) weights", value: want.rawValue,
                          hint: "set `precision: \(have)`, or convert the checkpoint with `python3 Quantization/convert.py HF_DIR OUT.gguf --precision \(want.rawValue)`")
                }
            } else {
                error("model.precision", "the model file does not record its precision (no ocellus.precision key)", value: want.rawValue,
                      hint: "remove `precision`, or reconvert the file with Quantization/convert.py")
            }
        }
        let config: Florence2Config
        do { config = try Florence2Config(file: file) } catch {
            self.error("model.path", "not a usable Florence-2 model: \(error)", value: m.path)
            return
        }
        checkPrompts(file: file)
        let limits = m.limits(for: config)
        let weightBytes = file.tensorInfos.reduce(0) { $0 + $1.byteCount }
        do {
            let plan = try Florence2MemoryPlanner.plan(config: config, limits: limits, weightBytes: weightBytes)
            model = ModelFacts(precision: have, planBytes: plan.totalBytes, weightBytes: weightBytes, limits: limits)
            do { try plan.check(budget: m.memoryBudget) } catch {
                self.error("model.memory_budget", "the model does not fit: \(error)", value: m.memoryBudget.map(MemoryPlan.format),
                           hint: "raise memory_budget to at least \(MemoryPlan.format(plan.totalBytes)), or lower max_new_tokens, num_beams or image_size")
            }
        } catch let e as Florence2ConfigError {
            if case let .limit(name, reason) = e {
                let key = ["image size": "model.image_size", "max prompt tokens": "model.max_prompt_tokens",
                           "max new tokens": "model.max_new_tokens", "beams": "model.num_beams", "threads": "model.threads"][name] ?? "model"
                error(key, "this model cannot serve it: \(reason)")
            } else {
                error("model", "\(e)")
            }
        } catch {
            self.error("model", "\(error)")
        }
    }

    /// Every task's prompt, tokenized with the model's tokenizer, fits `max_prompt_tokens`.
    private mutating func checkPrompts(file: GGUFFile) {
        let tokenizer: BPETokenizer
        do { tokenizer = try BPETokenizer(file: file) } catch {
            self.error("model.path", "the model file's tokenizer cannot be read: \(error)", value: file.path)
            return
        }
        let limit = configuration.model.maxPromptTokens
        for c in configuration.cameras where c.enabled {
            for (i, t) in c.tasks.enumerated() {
                guard let prompt = try? t.prompt() else { continue }
                let n = tokenizer.encoderInputIds(prompt: prompt).count
                if n > limit {
                    let key = "cameras.\(c.name).tasks[\(i)].\(t.text == nil ? "task" : "text")"
                    error(key, "the prompt is \(n) tokens (<s> and </s> included), more than model.max_prompt_tokens \(limit)",
                          value: t.text.map { String($0.prefix(60)) },
                          hint: "shorten the text, or raise model.max_prompt_tokens (the memory plan grows with it)")
                }
            }
        }
    }

    // MARK: Broker

    private mutating func checkBroker(environment: [String: String]) {
        let b = configuration.broker
        if let p = b.password { secret(p, environment: environment, what: "password file") }
        if let tls = b.tls {
            if let ca = tls.caFile { readableFile(ca, key: "broker.tls.ca_file", what: "CA file") }
            if let cert = tls.certFile { readableFile(cert, key: "broker.tls.cert_file", what: "client certificate") }
            if let key = tls.key { secret(key, environment: environment, what: "client key") }
        }
    }

    // MARK: Sources

    private mutating func checkSource(_ c: CameraConfiguration) {
        let key = "cameras.\(c.name).source"
        switch c.source {
        case .pattern:
            return
        case let .device(path):
            guard let st = Self.status(path) else {
                warn(key, "the device is not there now; the daemon reports the camera offline and keeps retrying", value: path,
                     hint: "check the cable, or list cameras with `ls -l /dev/v4l/by-id/`")
                return
            }
            guard Self.isKind(st, S_IFCHR) else {
                error(key, "not a character device (a V4L2 camera is one)", value: path)
                return
            }
            if access(path, R_OK | W_OK) != 0 {
                warn(key, "this user may not open the device", value: path, hint: "the daemon's unit adds SupplementaryGroups=video")
            }
        case let .imageFile(path):
            guard readableFile(path, key: key, what: "image file") else { return }
            do { _ = try ImageFile.read(path: path) } catch {
                self.error(key, "the image cannot be decoded: \(error)", value: path)
            }
        case let .imageFolder(path):
            guard let st = Self.status(path) else {
                error(key, "neither a device, an image file (.jpg, .jpeg, .png, .ppm) nor an existing folder", value: path,
                      hint: "use `pattern` for the synthetic camera, /dev/v4l/by-id/... for a camera, or an existing image or folder")
                return
            }
            guard Self.isKind(st, S_IFDIR) else {
                error(key, "not an image file (.jpg, .jpeg, .png, .ppm) or a folder", value: path)
                return
            }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            if !names.contains(where: { CameraSource.imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }) {
                error(key, "the folder holds no image (.jpg, .jpeg, .png, .ppm)", value: path)
            }
        }
    }

    // MARK: - Summary

    /// The lines `ocellus check` prints after "ok": node, broker, model, cameras with their tasks.
    public var summary: [String] {
        let c = configuration, b = c.broker
        var out: [String] = []
        out.append("node:     \(c.nodeId) (topics under \(c.topicRoot)/)")
        var broker = "\(b.tls == nil ? "mqtt" : "mqtts")://\(b.host):\(b.port), protocol \(b.protocolVersion.rawValue), qos \(b.qos), keepalive \(b.keepalive)s, client id \(b.clientId)"
        if let u = b.username { broker += ", user \(u)" }
        if let p = b.password { broker += ", password from \(p)" }
        if let t = b.tls {
            broker += ", TLS CA \(t.caFile ?? "system")"
            if t.certFile != nil { broker += " with client certificate" }
            if t.insecure { broker += " (host name NOT checked)" }
        }
        out.append("broker:   \(broker)")
        let m = c.model
        var modelLine = "\(m.path)"
        if let f = model {
            modelLine += " (\(f.precision ?? "precision unknown"), plan \(MemoryPlan.format(f.planBytes)) of budget \(m.memoryBudget.map(MemoryPlan.format) ?? "none"); "
                + "\(f.limits.threads) threads, \(f.limits.numBeams) beams, \(f.limits.imageWidth)x\(f.limits.imageHeight) input, up to \(m.maxNewTokens) new tokens)"
        }
        out.append("model:    \(modelLine)")
        let enabled = c.cameras.filter(\.enabled)
        let taskCount = enabled.reduce(0) { $0 + $1.tasks.count }
        out.append("cameras:  \(c.cameras.count) (\(enabled.count) enabled), \(taskCount) task\(taskCount == 1 ? "" : "s")")
        for cam in c.cameras {
            out.append("  \(cam.name): \(cam.source) \(cam.size) at \(DurationText.number(cam.fps)) fps\(cam.enabled ? "" : " (disabled)")")
            for t in cam.tasks {
                var line = "    \(t.name): \(t.task.token)"
                if let text = t.text { line += " '\(text)'" }
                line += " every \(DurationText.format(t.interval))\(t.retainsResults ? ", retained" : "")"
                out.append(line)
            }
        }
        out.append("health:   every \(DurationText.format(c.health.interval)); Home Assistant discovery \(c.homeAssistant.discovery ? "on (\(c.homeAssistant.discoveryPrefix)/)" : "off"); outbox \(c.outbox.capacity) messages")
        return out
    }
}
