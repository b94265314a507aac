// Tests of the daemon configuration (Sources/Daemon/Configuration*.swift): the example files in
// Configs/, every class of error with its key path, units, suggestions, reload diffs and file checks.
import Compute
import Florence2
import Foundation
import Logging
import XCTest
@testable import Daemon

final class ConfigurationTests: XCTestCase {
    // MARK: - Helpers

    /// The package root (this file is Tests/DaemonTests/ConfigurationTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let tinyModel = root + "/Tests/Florence2Tests/Fixtures/tiny-pad/tiny-pad-fp32.gguf"

    /// A minimal valid file plus `extra` top-level YAML (sections given in `extra` replace these).
    static func yaml(model: String? = nil, cameras: String? = nil, _ extra: String = "") -> String {
        let m = model ?? "model:\n  path: /models/f.gguf\n"
        let c = cameras ?? "cameras:\n  porch:\n    source: pattern\n    tasks:\n      - task: <CAPTION>\n"
        return m + c + extra
    }

    func parse(_ text: String, base: String? = nil, host: String = "testhost") throws -> DaemonConfiguration {
        try DaemonConfiguration.parse(yaml: text, source: "test.yaml", baseDirectory: base, hostname: host)
    }

    /// The issues of a file that must fail.
    func issues(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [ConfigurationIssue] {
        do {
            _ = try parse(text)
            XCTFail("expected errors in:\n\(text)", file: file, line: line)
            return []
        } catch let e as ConfigurationError {
            XCTAssertEqual(e.source, "test.yaml", file: file, line: line)
            return e.issues
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
            return []
        }
    }

    /// Asserts that `text` fails with an error at `path` whose text contains every one of `contains`.
    func assertError(_ text: String, at path: String, _ contains: String..., file: StaticString = #filePath, line: UInt = #line) {
        let all = issues(text, file: file, line: line)
        let here = all.filter { $0.path == path && $0.severity == .error }
        XCTAssertFalse(here.isEmpty, "no error at \(path); got:\n\(all.map(\.description).joined(separator: "\n"))", file: file, line: line)
        for c in contains where !here.contains(where: { $0.description.contains(c) }) {
            XCTFail("no error at \(path) mentions '\(c)'; got:\n\(here.map(\.description).joined(separator: "\n"))", file: file, line: line)
        }
    }

    func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "ocellus-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func write(_ text: String, to path: String, mode: Int = 0o600) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    // MARK: - The example files

    func testDemoConfigParsesValidatesAndPassesTheFileChecks() throws {
        let c = try DaemonConfiguration.load(path: Self.root + "/Configs/demo.yaml")
        XCTAssertEqual(c.nodeId, "demo")
        XCTAssertEqual(c.broker.host, "127.0.0.1")
        XCTAssertEqual(c.broker.port, 1883)
        XCTAssertEqual(c.broker.clientId, "ocellus-demo")
        XCTAssertEqual(c.model.path, Self.tinyModel, "relative to Configs/")
        XCTAssertEqual(c.model.precision, .fp32)
        XCTAssertEqual(c.cameras.count, 1)
        let cam = try XCTUnwrap(c.camera(named: "demo"))
        XCTAssertEqual(cam.source, .pattern)
        XCTAssertEqual(cam.size, FrameSize(width: 640, height: 480))
        XCTAssertEqual(cam.tasks.map(\.task), [.caption, .objectDetection])
        XCTAssertEqual(cam.tasks.map(\.interval), [2, 5])
        XCTAssertEqual(cam.tasks.map(\.name), ["caption", "od"])
        XCTAssertEqual(cam.tasks.map(\.retainsResults), [true, false])
        XCTAssertTrue(c.warnings.isEmpty, "\(c.warnings)")

        let check = ConfigurationCheck(c, environment: [:], cores: 2)
        XCTAssertEqual(check.issues, [], check.issues.map(\.description).joined(separator: "\n"))
        XCTAssertEqual(check.model?.precision, "fp32")
        XCTAssertTrue(check.summary.contains { $0.contains("od: <OD> every 5s") }, "\(check.summary)")
    }

    func testInstalledConfigParsesAndOnlyItsModelIsMissingHere() throws {
        let c = try DaemonConfiguration.load(path: Self.root + "/Configs/ocellus.yaml", hostname: "garage-pi")
        XCTAssertEqual(c.nodeId, "garage-pi")
        XCTAssertEqual(c.broker.clientId, "ocellus-garage-pi")
        XCTAssertNil(c.broker.tls)
        XCTAssertNil(c.broker.password)
        let porch = try XCTUnwrap(c.camera(named: "porch"))
        XCTAssertEqual(porch.source, .device("/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0"))
        XCTAssertEqual(porch.tasks.map(\.name), ["caption", "person_parcel"])
        XCTAssertEqual(porch.tasks[1].text, "a person. a parcel.")
        XCTAssertEqual(try porch.tasks[1].prompt(), "Locate the phrases in the caption: a person. a parcel.")
        XCTAssertTrue(c.warnings.isEmpty, "\(c.warnings)")
        // On this machine the model file and the camera are absent: an error and a warning.
        let check = ConfigurationCheck(c, environment: [:], cores: 2)
        XCTAssertEqual(check.errors.map(\.path), ["model.path"])
        XCTAssertEqual(check.warnings.map(\.path), ["cameras.porch.source"])
        // File checks point into the file as parse errors do.
        let lines = try String(contentsOfFile: Self.root + "/Configs/ocellus.yaml", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let at = try XCTUnwrap(check.errors[0].line)
        XCTAssertTrue(lines[at - 1].hasPrefix("  path: "), "line \(at): \(lines[at - 1])")
        XCTAssertEqual(check.errors[0].column, 9)
    }

    /// The values `Configs/ocellus.yaml` states are the defaults a minimal file gets.
    func testInstalledConfigStatesTheDefaults() throws {
        let full = try DaemonConfiguration.load(path: Self.root + "/Configs/ocellus.yaml", hostname: "h")
        let minimal = try parse(Self.yaml(), host: "h")
        XCTAssertEqual(full.nodeId, minimal.nodeId)
        XCTAssertEqual(full.logLevel, minimal.logLevel)
        XCTAssertEqual(full.broker, minimal.broker)
        var fm = full.model, mm = minimal.model
        fm.path = ""; mm.path = ""
        XCTAssertEqual(fm, mm)
        XCTAssertEqual(full.health, minimal.health)
        XCTAssertEqual(full.homeAssistant, minimal.homeAssistant)
        XCTAssertEqual(full.outbox, minimal.outbox)
        let porch = try XCTUnwrap(full.camera(named: "porch")), p = try XCTUnwrap(minimal.camera(named: "porch"))
        XCTAssertEqual(porch.size, p.size)
        XCTAssertEqual(porch.fps, p.fps)
        XCTAssertEqual(porch.enabled, p.enabled)
        XCTAssertEqual(porch.tasks[0].interval, p.tasks[0].interval)
        XCTAssertEqual(porch.tasks[0].retain, nil)
    }

    /// Every key of the schema appears (set or commented out) in the installed file and the README.
    func testInstalledConfigAndReadmeMentionEveryKey() throws {
        let yaml = try String(contentsOfFile: Self.root + "/Configs/ocellus.yaml", encoding: .utf8)
        let readme = try String(contentsOfFile: Self.root + "/Configs/README.md", encoding: .utf8)
        let all = Schema.top + Schema.broker + Schema.tls + Schema.model + Schema.camera + Schema.task
            + Schema.health + Schema.homeAssistant + Schema.outbox
        for key in all {
            XCTAssertTrue(yaml.range(of: "(^|[\\s#])\(key):", options: .regularExpression) != nil, "ocellus.yaml lacks '\(key):'")
            XCTAssertTrue(readme.range(of: "[`.]\(key)[`.\\[]", options: .regularExpression) != nil, "README lacks `\(key)`")
        }
        for task in Florence2Task.allCases { XCTAssertTrue(yaml.contains(task.token), "ocellus.yaml lacks \(task.token)") }
    }

    // MARK: - Defaults

    func testMinimalFileGetsEveryDefault() throws {
        let c = try parse(Self.yaml(), host: "Garage Pi_2.local")
        XCTAssertEqual(c.nodeId, "garage-pi_2")
        XCTAssertEqual(c.logLevel, .info)
        XCTAssertEqual(c.broker, BrokerConfiguration(host: "127.0.0.1", port: 1883, tls: nil, username: nil, password: nil,
                                                     clientId: "ocellus-garage-pi_2", topicPrefix: "ocellus", qos: 1,
                                                     keepalive: 60, protocolVersion: .auto))
        XCTAssertEqual(c.topicRoot, "ocellus/garage-pi_2")
        XCTAssertEqual(c.model, ModelConfiguration(path: "/models/f.gguf", precision: nil, threads: nil, memoryBudget: nil,
                                                   maxNewTokens: 256, numBeams: nil, maxPromptTokens: 256, imageSize: nil))
        let cam = c.cameras[0]
        XCTAssertEqual(cam.size, FrameSize(width: 640, height: 480))
        XCTAssertEqual(cam.fps, 5)
        XCTAssertTrue(cam.enabled)
        XCTAssertEqual(cam.tasks, [TaskConfiguration(name: "caption", task: .caption, text: nil, interval: 10, retain: nil)])
        XCTAssertEqual(c.health.interval, 30)
        XCTAssertEqual(c.homeAssistant, HomeAssistantConfiguration(discovery: true, discoveryPrefix: "homeassistant"))
        XCTAssertEqual(c.outbox.capacity, 1000)
    }

    func testNodeIdFromHostName() {
        XCTAssertEqual(DaemonConfiguration.sanitizedNodeId(hostname: "raspberrypi"), "raspberrypi")
        XCTAssertEqual(DaemonConfiguration.sanitizedNodeId(hostname: "Cam-Box.home.arpa"), "cam-box")
        XCTAssertEqual(DaemonConfiguration.sanitizedNodeId(hostname: "  weird  name!! "), "weird-name")
        XCTAssertEqual(DaemonConfiguration.sanitizedNodeId(hostname: "ÄÖÜ"), "ocellus")
        XCTAssertEqual(DaemonConfiguration.sanitizedNodeId(hostname: ""), "ocellus")
        XCTAssertTrue(Names.isValidName(DaemonConfiguration.sanitizedNodeId(hostname: DaemonConfiguration.currentHostname())))
    }

    func testTLSSwitchesTheDefaultPortAndReadsItsFiles() throws {
        let on = try parse(Self.yaml("broker:\n  tls: true\n"))
        XCTAssertEqual(on.broker.tls, TLSConfiguration())
        XCTAssertEqual(on.broker.port, 8883)
        let empty = try parse(Self.yaml("broker:\n  tls: {}\n"))
        XCTAssertEqual(empty.broker.port, 8883)
        let off = try parse(Self.yaml("broker:\n  tls: false\n  port: 1884\n"))
        XCTAssertNil(off.broker.tls)
        XCTAssertEqual(off.broker.port, 1884)
        let files = try parse(Self.yaml("broker:\n  port: 9000\n  tls:\n    ca_file: ca.crt\n    cert_file: /c/client.crt\n    key_credential: mqtt_client_key\n"), base: "/etc/ocellus")
        XCTAssertEqual(files.broker.port, 9000)
        XCTAssertEqual(files.broker.tls, TLSConfiguration(caFile: "/etc/ocellus/ca.crt", certFile: "/c/client.crt",
                                                          key: .credential(name: "mqtt_client_key", keyPath: "broker.tls.key_credential")))
    }

    func testNullValuesTakeTheDefault() throws {
        let c = try parse(Self.yaml("broker:\n  tls:\n  qos: ~\nhealth:\nlog_level: null\n"))
        XCTAssertNil(c.broker.tls)
        XCTAssertEqual(c.broker.qos, 1)
        XCTAssertEqual(c.health.interval, 30)
        XCTAssertEqual(c.logLevel, .info)
    }

    func testRelativePathsFollowTheFileAndSourcesAreClassified() throws {
        let c = try parse(Self.yaml(model: "model:\n  path: ../models/m.gguf\n", cameras: """
            cameras:
              a: { source: /dev/v4l/by-id/usb-cam-video-index0, tasks: [ { task: <OD> } ] }
              b: { source: snaps/door.JPG, tasks: [ { task: <OD> } ] }
              c: { source: /srv/frames, tasks: [ { task: <OD> } ] }
              d: { source: pattern, tasks: [ { task: <OD> } ] }

            """), base: "/etc/ocellus")
        XCTAssertEqual(c.model.path, "/etc/models/m.gguf")
        XCTAssertEqual(c.cameras.map(\.source), [.device("/dev/v4l/by-id/usb-cam-video-index0"), .imageFile("/etc/ocellus/snaps/door.JPG"),
                                                 .imageFolder("/srv/frames"), .pattern])
        XCTAssertEqual(PathText.absolute("./a/../b//c", base: "/x/y"), "/x/y/b/c")
    }

    func testTaskTextIsTrimmedAndRegionsAccepted() throws {
        let c = try parse(Self.yaml(cameras: """
            cameras:
              gate:
                source: pattern
                tasks:
                  - { task: <OPEN_VOCABULARY_DETECTION>, text: "  a red car  ", retain: yes }
                  - { task: <REGION_TO_CATEGORY>, text: "<loc_1><loc_2><loc_500><loc_999>", name: region1 }

            """))
        let t = c.cameras[0].tasks
        XCTAssertEqual(t[0].text, "a red car")
        XCTAssertEqual(t[0].retain, true)
        XCTAssertEqual(try t[0].prompt(), "Locate a red car in the image.")
        XCTAssertEqual(t[1].name, "region1")
        XCTAssertThrowsError(try TaskConfiguration(name: "x", task: .caption, text: "a dog", interval: 1, retain: nil).prompt())
        XCTAssertEqual(try t[1].prompt(), "What is the region <loc_1><loc_2><loc_500><loc_999>?")
    }

    // MARK: - Errors, each with its key path

    func testUnknownKeysNameTheirPathWithASuggestion() {
        assertError(Self.yaml("log_levl: debug\n"), at: "log_levl", "unknown key", "did you mean 'log_level'?")
        assertError(Self.yaml("broker:\n  hots: x\n"), at: "broker.hots", "did you mean 'host'?")
        assertError(Self.yaml("broker:\n  topic-prefix: x\n"), at: "broker.topic-prefix", "did you mean 'topic_prefix'?")
        assertError(Self.yaml("broker:\n  tls:\n    cafile: x\n"), at: "broker.tls.cafile", "did you mean 'ca_file'?")
        assertError(Self.yaml("homeassistant:\n  discovery_prefx: ha\n"), at: "homeassistant.discovery_prefx", "did you mean 'discovery_prefix'?")
        assertError(Self.yaml(cameras: "cameras:\n  porch:\n    source: pattern\n    tasks:\n      - task: <OD>\n        intervall: 5s\n"),
                    at: "cameras.porch.tasks[0].intervall", "did you mean 'interval'?")
        // A key that belongs to another section says where.
        assertError(Self.yaml("port: 1883\n"), at: "port", "'port' belongs under broker")
        assertError(Self.yaml("broker:\n  fps: 3\n"), at: "broker.fps", "'fps' belongs under cameras.<name>")
        // Nothing near: the known keys are listed.
        assertError(Self.yaml("outbox:\n  zzzzzz: 1\n"), at: "outbox.zzzzzz", "known keys here: capacity")
    }

    func testBrokerErrors() {
        assertError(Self.yaml("broker:\n  password: hunter2\n"), at: "broker.password", "does not belong", "password_file", "LoadCredential=")
        assertError(Self.yaml("broker:\n  username: u\n  password_file: /p\n  password_credential: c\n"), at: "broker.password_credential", "not both")
        assertError(Self.yaml("broker:\n  password_file: /p\n"), at: "broker.password_file", "needs a username")
        XCTAssertNoThrow(try parse(Self.yaml("broker:\n  protocol: 5\n  password_credential: mqtt_password\n")), "MQTT 5 allows a password alone")
        assertError(Self.yaml("broker:\n  username: u\n  password_credential: ../etc/shadow\n"), at: "broker.password_credential", "not a systemd credential name")
        assertError(Self.yaml("broker:\n  host: mqtt://b.lan:1883\n"), at: "broker.host", "not a URL", "mqtt://b.lan:1883")
        assertError(Self.yaml("broker:\n  host: b.lan:1883\n"), at: "broker.host", "put the port in `port`")
        assertError(Self.yaml("broker:\n  host: ''\n"), at: "broker.host", "must not be empty")
        assertError(Self.yaml("broker:\n  port: 70000\n"), at: "broker.port", "out of range", "1 to 65535")
        assertError(Self.yaml("broker:\n  port: http\n"), at: "broker.port", "whole number", "'http'")
        assertError(Self.yaml("broker:\n  qos: 3\n"), at: "broker.qos", "0 to 2")
        assertError(Self.yaml("broker:\n  keepalive: 2s\n"), at: "broker.keepalive", "too short")
        assertError(Self.yaml("broker:\n  keepalive: 1.5m 0.5s\n"), at: "broker.keepalive", "whole seconds")
        assertError(Self.yaml("broker:\n  protocol: \"5.0\"\n"), at: "broker.protocol", "auto, 5, 3.1.1", "'5.0'")
        assertError(Self.yaml("broker:\n  protocol: 3.1\n"), at: "broker.protocol", "did you mean '3.1.1'?")
        assertError(Self.yaml("broker:\n  topic_prefix: home/#\n"), at: "broker.topic_prefix", "wildcards")
        assertError(Self.yaml("broker:\n  topic_prefix: /ocellus\n"), at: "broker.topic_prefix", "empty levels")
        assertError(Self.yaml("broker:\n  tls:\n    cert_file: /c\n"), at: "broker.tls.cert_file", "needs its private key")
        assertError(Self.yaml("broker:\n  tls:\n    key_file: /k\n"), at: "broker.tls.key_file", "without its client certificate")
        assertError(Self.yaml("broker:\n  tls:\n    key_password: x\n"), at: "broker.tls.key_password", "passphrase")
        assertError(Self.yaml("broker:\n  tls: maybe\n"), at: "broker.tls", "true, false or a mapping")
        assertError(Self.yaml("broker: 127.0.0.1\n"), at: "broker", "expected a mapping")
    }

    func testInsecureTLSIsAWarning() throws {
        let c = try parse(Self.yaml("broker:\n  tls:\n    insecure: true\n"))
        XCTAssertEqual(c.warnings.map(\.path), ["broker.tls.insecure"])
        XCTAssertEqual(c.warnings.first?.severity, .warning)
    }

    func testTopLevelAndModelErrors() {
        assertError(Self.yaml("node_id: Front.Door\n"), at: "node_id", "a-z, 0-9", "e.g. 'front-door'")
        assertError(Self.yaml("log_level: warn\n"), at: "log_level", "did you mean 'warning'?")
        assertError(Self.yaml(model: ""), at: "model", "missing section")
        assertError(Self.yaml(model: "model:\n  threads: 2\n"), at: "model.path", "missing")
        assertError(Self.yaml(model: "model:\n  path: /m\n  precision: int4\n"), at: "model.precision", "did you mean 'int8'?")
        assertError(Self.yaml(model: "model:\n  path: /m\n  memory_budget: lots\n"), at: "model.memory_budget", "expected a size", "'lots'")
        assertError(Self.yaml(model: "model:\n  path: /m\n  memory_budget: -5MB\n"), at: "model.memory_budget", "expected a size")
        assertError(Self.yaml(model: "model:\n  path: /m\n  threads: 0\n"), at: "model.threads", "1 to 1024")
        assertError(Self.yaml(model: "model:\n  path: /m\n  max_new_tokens: 0\n"), at: "model.max_new_tokens", "out of range")
        assertError(Self.yaml(model: "model:\n  path: /m\n  num_beams: 99\n"), at: "model.num_beams", "1 to 16")
        assertError(Self.yaml(model: "model:\n  path: /m\n  image_size: 768\n"), at: "model.image_size", "WIDTHxHEIGHT")
        assertError(Self.yaml("health:\n  interval: 0.5s\n"), at: "health.interval", "too short")
        assertError(Self.yaml("outbox:\n  capacity: 0\n"), at: "outbox.capacity", "out of range")
        assertError(Self.yaml("homeassistant:\n  discovery: maybe\n"), at: "homeassistant.discovery", "true or false")
        assertError("- a\n- b\n", at: "", "expected a mapping")
    }

    func testCameraErrors() {
        func cam(_ body: String) -> String { Self.yaml(cameras: "cameras:\n  porch:\n" + body) }
        let task = "    tasks:\n      - task: <CAPTION>\n"
        assertError(Self.yaml(cameras: ""), at: "cameras", "at least one camera")
        assertError(Self.yaml(cameras: "cameras: {}\n"), at: "cameras", "no camera")
        assertError(Self.yaml(cameras: "cameras:\n  - porch\n"), at: "cameras", "expected a mapping of camera names")
        assertError(Self.yaml(cameras: "cameras:\n  Porch Cam:\n    source: pattern\n" + task), at: "cameras.Porch Cam", "a-z, 0-9", "'porch-cam'")
        assertError(cam(task), at: "cameras.porch.source", "missing")
        assertError(cam("    source: patern\n" + task), at: "cameras.porch.source", "did you mean 'pattern'?")
        assertError(cam("    source: pattern\n    size: 640*480\n" + task), at: "cameras.porch.size", "WIDTHxHEIGHT", "'640*480'")
        assertError(cam("    source: pattern\n    size: 8x8\n" + task), at: "cameras.porch.size", "out of range")
        assertError(cam("    source: pattern\n    fps: 0\n" + task), at: "cameras.porch.fps", "out of range")
        assertError(cam("    source: pattern\n    fps: fast\n" + task), at: "cameras.porch.fps", "expected a number")
        assertError(cam("    source: pattern\n    enabled: sometimes\n" + task), at: "cameras.porch.enabled", "true or false")
        assertError(cam("    source: pattern\n"), at: "cameras.porch.tasks", "at least one task")
        assertError(cam("    source: pattern\n    tasks: []\n"), at: "cameras.porch.tasks", "at least one task")
        assertError(cam("    source: pattern\n    tasks: <CAPTION>\n"), at: "cameras.porch.tasks", "expected a list")
        XCTAssertNoThrow(try parse(cam("    source: pattern\n    enabled: false\n")), "a disabled camera may have no tasks")
        let twice = Self.yaml(cameras: "cameras:\n  a:\n    source: /dev/v4l/by-id/x\n\(task)  b:\n    source: /dev/v4l/by-id/x\n\(task)")
        assertError(twice, at: "cameras.b.source", "same device as camera 'a'")
    }

    func testTaskErrors() {
        func tasks(_ items: String) -> String { Self.yaml(cameras: "cameras:\n  porch:\n    source: pattern\n    tasks:\n" + items) }
        assertError(tasks("      - interval: 5s\n"), at: "cameras.porch.tasks[0].task", "missing")
        assertError(tasks("      - <CAPTION>\n"), at: "cameras.porch.tasks[0]", "expected a task mapping")
        assertError(tasks("      - task: CAPTION\n"), at: "cameras.porch.tasks[0].task", "not a Florence-2 task", "write the token exactly: '<CAPTION>'")
        assertError(tasks("      - task: <0D>\n"), at: "cameras.porch.tasks[0].task", "did you mean '<OD>'?")
        assertError(tasks("      - task: <CAPTON>\n"), at: "cameras.porch.tasks[0].task", "did you mean '<CAPTION>'?")
        assertError(tasks("      - task: <SEGMENT_EVERYTHING>\n"), at: "cameras.porch.tasks[0].task", "use one of <OCR>")
        assertError(tasks("      - task: <OD>\n      - task: <CAPTION>\n        text: a dog\n"), at: "cameras.porch.tasks[1].text", "<CAPTION> takes no text", "'a dog'")
        assertError(tasks("      - task: <CAPTION_TO_PHRASE_GROUNDING>\n"), at: "cameras.porch.tasks[0].text", "needs `text`")
        assertError(tasks("      - task: <OPEN_VOCABULARY_DETECTION>\n        text: '   '\n"), at: "cameras.porch.tasks[0].text", "needs `text`")
        assertError(tasks("      - task: <REGION_TO_OCR>\n        text: the sign\n"), at: "cameras.porch.tasks[0].text", "four <loc_N> tokens", "'the sign'")
        assertError(tasks("      - task: <REGION_TO_OCR>\n        text: <loc_1><loc_2><loc_3><loc_1000>\n"), at: "cameras.porch.tasks[0].text", "four <loc_N>")
        assertError(tasks("      - task: <OD>\n        interval: 50ms\n"), at: "cameras.porch.tasks[0].interval", "too short", "100ms")
        assertError(tasks("      - task: <OD>\n        interval: often\n"), at: "cameras.porch.tasks[0].interval", "expected a duration")
        assertError(tasks("      - task: <OD>\n        retain: perhaps\n"), at: "cameras.porch.tasks[0].retain", "true or false")
        assertError(tasks("      - task: <OD>\n        name: Big Things\n"), at: "cameras.porch.tasks[0].name", "a-z, 0-9")
        assertError(tasks("      - task: <OD>\n      - task: <OD>\n        interval: 2s\n"), at: "cameras.porch.tasks[1].name", "same topic level 'od'")
        XCTAssertNoThrow(try parse(tasks("      - task: <OD>\n      - task: <OD>\n        name: od_fast\n")))
    }

    func testIntervalShorterThanTheFramePeriodIsAWarning() throws {
        let c = try parse(Self.yaml(cameras: "cameras:\n  p:\n    source: pattern\n    fps: 2\n    tasks:\n      - { task: <OD>, interval: 200ms }\n"))
        XCTAssertEqual(c.warnings.map(\.path), ["cameras.p.tasks[0].interval"])
        XCTAssertTrue(c.warnings[0].message.contains("frame period"))
    }

    func testEveryErrorIsReportedAtOnceInFileOrderWithPositions() {
        let text = """
            model:
              path: /m
              threads: zero
            cameras:
              porch:
                source: pattern
                tasks:
                  - task: <CAPTION>
                    text: a dog
                  - task: <XX>
            broker:
              qos: 9

            """
        let all = issues(text)
        XCTAssertEqual(all.map(\.path), ["model.threads", "cameras.porch.tasks[0].text", "cameras.porch.tasks[1].task", "broker.qos"])
        XCTAssertEqual(all.map(\.line), [3, 9, 10, 12])
        XCTAssertEqual(all[0].column, 12)
        XCTAssertEqual(all[0].value, "zero")
        XCTAssertNotNil(all[0].hint)
        let e = ConfigurationError(source: "test.yaml", issues: all)
        XCTAssertTrue(e.description.hasPrefix("test.yaml:3:12: model.threads: expected a whole number (got 'zero'); "), e.description)
        XCTAssertEqual(e.description.split(separator: "\n").count, 4)
    }

    func testYAMLSyntaxErrorsHaveAPosition() {
        let bad = issues("model:\n  path: /m\n cameras: [\n")
        XCTAssertEqual(bad.count, 1)
        XCTAssertNotNil(bad.first?.line)
        XCTAssertTrue(bad.first?.message.hasPrefix("not valid YAML") ?? false)
        let dup = issues(Self.yaml("broker:\n  qos: 1\n  qos: 2\n"))
        XCTAssertEqual(dup.count, 1)
        XCTAssertTrue(dup.first?.message.contains("duplicate key 'qos'") ?? false, "\(dup)")
    }

    func testLoadOfAMissingFile() {
        XCTAssertThrowsError(try DaemonConfiguration.load(path: "/nonexistent/ocellus.yaml")) { e in
            XCTAssertEqual((e as? ConfigurationError)?.issues.first?.message, "the configuration file does not exist")
        }
    }

    // MARK: - Units

    func testDurations() {
        let cases: [(String, Double?)] = [
            ("10", 10), ("2.5", 2.5), ("10s", 10), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("1m30s", 90),
            ("1m 30s", 90), ("1.5h", 5400), ("0.1s", 0.1), ("10S", 10), (" 3s ", 3),
            ("", nil), ("s", nil), ("10x", nil), ("-1", nil), ("-1s", nil), ("1d", nil), ("ten", nil), ("1..2s", nil), ("inf", nil),
        ]
        for (text, want) in cases {
            let got = DurationText.seconds(text)
            if let want {
                XCTAssertEqual(got ?? -1, want, accuracy: 1e-12, "'\(text)'")
            } else {
                XCTAssertNil(got, "'\(text)'")
            }
        }
        XCTAssertEqual(DurationText.format(0.5), "500ms")
        XCTAssertEqual(DurationText.format(10), "10s")
        XCTAssertEqual(DurationText.format(120), "2m")
        XCTAssertEqual(DurationText.format(90), "90s")
        XCTAssertEqual(DurationText.format(2.5), "2.5s")
    }

    func testByteSizes() {
        let cases: [(String, Int?)] = [
            ("1048576", 1_048_576), ("512MiB", 512 << 20), ("512 MiB", 512 << 20), ("1.5GB", 1_500_000_000),
            ("1.5GiB", 1_610_612_736), ("2G", 2 << 30), ("1500M", 1500 << 20), ("64kB", 64_000), ("64KiB", 65_536),
            ("64k", 65_536), ("100B", 100), ("1tb", 1_000_000_000_000), ("1_000_000", 1_000_000), ("0.5KiB", 512),
            ("", nil), ("MB", nil), ("0", nil), ("-5MB", nil), ("12 parsecs", nil), ("1.2.3MB", nil), ("5 M B", nil),
        ]
        for (text, want) in cases { XCTAssertEqual(ByteSizeText.bytes(text), want, "'\(text)'") }
    }

    func testFrameSizes() {
        XCTAssertEqual(FrameSize(text: "640x480"), FrameSize(width: 640, height: 480))
        XCTAssertEqual(FrameSize(text: "1280X720"), FrameSize(width: 1280, height: 720))
        XCTAssertEqual(FrameSize(text: "320 × 240"), FrameSize(width: 320, height: 240))
        XCTAssertNil(FrameSize(text: "640"))
        XCTAssertNil(FrameSize(text: "640x"))
        XCTAssertNil(FrameSize(text: "axb"))
        XCTAssertEqual(FrameSize(width: 64, height: 48).description, "64x48")
    }

    func testSuggestions() {
        XCTAssertEqual(Suggestion.distance(Array("kitten"), Array("sitting")), 3)
        XCTAssertEqual(Suggestion.distance(Array("hots"), Array("host")), 1, "a swap is one edit")
        XCTAssertEqual(Suggestion.distance(Array(""), Array("abc")), 3)
        XCTAssertEqual(Suggestion.nearest(to: "Host", among: Schema.broker), "host")
        XCTAssertEqual(Suggestion.nearest(to: "keep_alive", among: Schema.broker), "keepalive")
        XCTAssertEqual(Suggestion.nearest(to: "passwordfile", among: Schema.broker), "password_file")
        XCTAssertNil(Suggestion.nearest(to: "xyz", among: Schema.broker))
        XCTAssertNil(Suggestion.nearest(to: "qs", among: ["fps"]), "short words allow one edit")
    }

    // MARK: - Reload diff

    func testDiffClassifiesEachKindOfChange() throws {
        let base = """
            node_id: box
            model: { path: /m.gguf, max_new_tokens: 64 }
            broker: { host: b.lan }
            cameras:
              porch:
                source: /dev/v4l/by-id/porch
                tasks: [ { task: <CAPTION>, interval: 10s }, { task: <OD>, interval: 5s } ]
              yard:
                source: pattern
                tasks: [ { task: <CAPTION> } ]
              attic:
                source: pattern
                enabled: false

            """
        let old = try parse(base)
        func after(_ edit: (String) -> String) throws -> ConfigurationDiff {
            DaemonConfiguration.diff(old, try parse(edit(base)))
        }
        XCTAssertTrue(DaemonConfiguration.diff(old, old).isEmpty)
        let moved = try parse("# a comment moves every line\n\n" + base)
        XCTAssertEqual(moved, old, "positions are not settings")
        XCTAssertNotEqual(moved.positions, old.positions)
        XCTAssertTrue(DaemonConfiguration.diff(old, moved).isEmpty)
        XCTAssertEqual(DaemonConfiguration.diff(old, old).summary, [])

        // Prompt, task and interval: no reopen, no model reload, no reconnect.
        var d = try after { $0.replacingOccurrences(of: "{ task: <CAPTION>, interval: 10s }", with: "{ task: <CAPTION>, interval: 3s }") }
        XCTAssertEqual(d.cameras.map(\.name), ["porch"])
        XCTAssertEqual(d.change(ofCamera: "porch"), .tasks)
        XCTAssertFalse(d.reloadModel || d.reconnectBroker || d.republishDiscovery)
        d = try after { $0.replacingOccurrences(of: "{ task: <OD>, interval: 5s }", with: "{ task: <OPEN_VOCABULARY_DETECTION>, text: a cat, interval: 5s, name: od }") }
        XCTAssertEqual(d.change(ofCamera: "porch"), .tasks)
        XCTAssertTrue(d.republishDiscovery, "the task token of a published topic changed")
        d = try after { $0.replacingOccurrences(of: "yard:\n    source: pattern\n    tasks: [ { task: <CAPTION> } ]",
                                               with: "yard:\n    source: pattern\n    tasks: [ { task: <CAPTION_TO_PHRASE_GROUNDING>, text: a fox, name: caption } ]") }
        XCTAssertEqual(d.change(ofCamera: "yard"), .tasks)

        // Source, size, fps: reopen that camera only.
        d = try after { $0.replacingOccurrences(of: "/dev/v4l/by-id/porch", with: "/dev/v4l/by-id/porch2") }
        XCTAssertEqual(d.cameras.map(\.name), ["porch"])
        XCTAssertEqual(d.change(ofCamera: "porch"), .reopen)
        XCTAssertFalse(d.reloadModel || d.reconnectBroker)
        d = try after { $0.replacingOccurrences(of: "  yard:\n    source: pattern\n", with: "  yard:\n    source: pattern\n    size: 320x240\n") }
        XCTAssertEqual(d.cameras.map(\.name), ["yard"])
        XCTAssertEqual(d.change(ofCamera: "yard"), .reopen)
        d = try after { $0.replacingOccurrences(of: "  yard:\n    source: pattern\n", with: "  yard:\n    source: pattern\n    fps: 2\n") }
        XCTAssertEqual(d.change(ofCamera: "yard"), .reopen)

        // Enable, disable, add, remove.
        d = try after { $0.replacingOccurrences(of: "enabled: false", with: "enabled: true\n    tasks: [ { task: <OCR> } ]") }
        XCTAssertEqual(d.cameras.map(\.name), ["attic"])
        XCTAssertEqual(d.change(ofCamera: "attic"), .reopen)
        d = try after { $0.replacingOccurrences(of: "  yard:\n    source: pattern\n", with: "  yard:\n    source: pattern\n    enabled: false\n") }
        XCTAssertEqual(d.change(ofCamera: "yard"), .removed)
        d = try after { $0 + "  gate:\n    source: pattern\n    tasks: [ { task: <OD> } ]\n" }
        XCTAssertEqual(d.cameras.map(\.name), ["gate"])
        XCTAssertEqual(d.change(ofCamera: "gate"), .added)
        XCTAssertTrue(d.republishDiscovery)
        d = try after { $0.replacingOccurrences(of: "  yard:\n    source: pattern\n    tasks: [ { task: <CAPTION> } ]\n", with: "") }
        XCTAssertEqual(d.cameras.map(\.name), ["yard"])
        XCTAssertEqual(d.change(ofCamera: "yard"), .removed)
        d = try after { $0.replacingOccurrences(of: "enabled: false", with: "enabled: false\n    size: 320x240") }
        XCTAssertTrue(d.isEmpty, "a disabled camera's changes need no action")

        // Model: reload; cameras untouched.
        d = try after { $0.replacingOccurrences(of: "max_new_tokens: 64", with: "max_new_tokens: 128") }
        XCTAssertTrue(d.reloadModel)
        XCTAssertTrue(d.cameras.isEmpty)
        XCTAssertFalse(d.reconnectBroker)
        XCTAssertEqual(d.summary, ["reload model"])
        d = try after { $0.replacingOccurrences(of: "/m.gguf", with: "/n.gguf") }
        XCTAssertTrue(d.reloadModel)

        // Broker: reconnect; node id too (client id, topics and will follow it).
        d = try after { $0.replacingOccurrences(of: "host: b.lan", with: "host: b.lan, qos: 0") }
        XCTAssertTrue(d.reconnectBroker)
        XCTAssertFalse(d.reloadModel || d.republishDiscovery)
        XCTAssertTrue(d.cameras.isEmpty)
        d = try after { $0.replacingOccurrences(of: "node_id: box", with: "node_id: box2") }
        XCTAssertTrue(d.reconnectBroker && d.republishDiscovery)

        // The small sections.
        d = try after { $0 + "health: { interval: 10s }\noutbox: { capacity: 50 }\nlog_level: debug\n" }
        XCTAssertTrue(d.health && d.outbox && d.logLevel)
        XCTAssertFalse(d.reloadModel || d.reconnectBroker || d.republishDiscovery)
        XCTAssertEqual(d.summary, ["health interval", "outbox capacity", "log level"])
        d = try after { $0 + "homeassistant: { discovery: false }\n" }
        XCTAssertTrue(d.republishDiscovery)
        XCTAssertFalse(d.reconnectBroker)
    }

    // MARK: - File checks (ocellus check)

    func testCheckFindsPrecisionMismatchAndBudget() throws {
        let ok = try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n  precision: fp32\n"))
        let good = ConfigurationCheck(ok, environment: [:], cores: 2)
        XCTAssertEqual(good.issues, [])
        let facts = try XCTUnwrap(good.model)
        XCTAssertEqual(facts.precision, "fp32")
        XCTAssertGreaterThan(facts.planBytes, facts.weightBytes)
        XCTAssertEqual(facts.limits.threads, 2)

        let mismatch = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n  precision: int8\n")), environment: [:], cores: 2)
        XCTAssertEqual(mismatch.errors.map(\.path), ["model.precision"])
        XCTAssertTrue(mismatch.errors[0].description.contains("holds fp32 weights"), mismatch.errors[0].description)

        let small = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n  memory_budget: 1MiB\n")), environment: [:], cores: 2)
        XCTAssertEqual(small.errors.map(\.path), ["model.memory_budget"])
        XCTAssertTrue(small.errors[0].description.contains("raise memory_budget to at least \(MemoryPlan.format(facts.planBytes))"))

        let big = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n  max_new_tokens: 4096\n  threads: 64\n")), environment: [:], cores: 2)
        XCTAssertEqual(big.errors.map(\.path), ["model.max_new_tokens"])
        XCTAssertEqual(big.warnings.map(\.path), ["model.threads"])

        // A prompt longer than max_prompt_tokens, counted with the model's own tokenizer.
        let phrases = Array(repeating: "a red car", count: 12).joined(separator: ". ")
        let cams = "cameras:\n  gate:\n    source: pattern\n    tasks:\n      - { task: <CAPTION_TO_PHRASE_GROUNDING>, text: '\(phrases)' }\n"
        let long = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n  max_prompt_tokens: 16\n", cameras: cams)), environment: [:], cores: 2)
        XCTAssertEqual(long.errors.map(\.path), ["cameras.gate.tasks[0].text"])
        XCTAssertTrue(long.errors[0].message.contains("more than model.max_prompt_tokens 16"), long.errors[0].message)
        let roomy = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n", cameras: cams)), environment: [:], cores: 2)
        XCTAssertEqual(roomy.errors, [])

        let dir = try temporaryDirectory()
        try write("not a model", to: dir + "/junk.gguf")
        let junk = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(dir)/junk.gguf\n")), environment: [:], cores: 2)
        XCTAssertEqual(junk.errors.map(\.path), ["model.path"])
        XCTAssertTrue(junk.errors[0].message.contains("not a usable model file"))
        let missing = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(dir)/none.gguf\n")), environment: [:], cores: 2)
        XCTAssertEqual(missing.errors.map(\.message), ["the model file does not exist"])
        let folder = ConfigurationCheck(try parse(Self.yaml(model: "model:\n  path: \(dir)\n")), environment: [:], cores: 2)
        XCTAssertEqual(folder.errors.map(\.message), ["the model file is not a regular file"])
    }

    func testCheckReadsSecretsAndTLSFiles() throws {
        let dir = try temporaryDirectory()
        try write("s3cret\n", to: dir + "/pw")
        try write("s3cret", to: dir + "/open-pw", mode: 0o644)
        try write("", to: dir + "/empty-pw")
        try write("CA", to: dir + "/ca.crt")
        let model = "model:\n  path: \(Self.tinyModel)\n"
        func check(_ broker: String, env: [String: String] = [:]) throws -> ConfigurationCheck {
            ConfigurationCheck(try parse(Self.yaml(model: model, "broker:\n  username: u\n" + broker), base: dir), environment: env, cores: 2)
        }
        XCTAssertEqual(try check("  password_file: pw\n").issues, [])
        XCTAssertEqual(try check("  password_file: open-pw\n").warnings.map(\.path), ["broker.password_file"])
        XCTAssertEqual(try check("  password_file: empty-pw\n").errors.map(\.message), ["the password file is empty"])
        XCTAssertEqual(try check("  password_file: nope\n").errors.map(\.path), ["broker.password_file"])
        // A credential is checked when systemd's directory is there, else a warning says it was not.
        XCTAssertEqual(try check("  password_credential: pw\n", env: ["CREDENTIALS_DIRECTORY": dir]).issues, [])
        XCTAssertEqual(try check("  password_credential: gone\n", env: ["CREDENTIALS_DIRECTORY": dir]).errors.map(\.path), ["broker.password_credential"])
        let unset = try check("  password_credential: pw\n")
        XCTAssertEqual(unset.errors, [])
        XCTAssertTrue(unset.warnings.first?.message.contains("CREDENTIALS_DIRECTORY is unset") ?? false)

        XCTAssertEqual(try check("  tls:\n    ca_file: ca.crt\n").issues, [])
        let tls = try check("  tls:\n    ca_file: ca.missing\n    cert_file: ca.crt\n    key_file: no.key\n")
        XCTAssertEqual(tls.errors.map(\.path), ["broker.tls.ca_file", "broker.tls.key_file"])

        // Reading the password: the file's text without its trailing newline; the credential from its directory.
        let c = try parse(Self.yaml(model: model, "broker:\n  username: u\n  password_file: pw\n"), base: dir)
        XCTAssertEqual(try c.broker.readPassword(environment: [:]), "s3cret")
        let cred = try parse(Self.yaml(model: model, "broker:\n  username: u\n  password_credential: pw\n"), base: dir)
        XCTAssertEqual(try cred.broker.readPassword(environment: ["CREDENTIALS_DIRECTORY": dir]), "s3cret")
        XCTAssertThrowsError(try cred.broker.readPassword(environment: [:])) { e in
            XCTAssertTrue("\(e)".contains("LoadCredential=pw:"), "\(e)")
        }
        XCTAssertNil(try parse(Self.yaml()).broker.readPassword(environment: [:]))
    }

    func testCheckLooksAtImageSources() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/frames", withIntermediateDirectories: true)
        // A 2x1 binary PPM.
        try Data("P6\n2 1\n255\n".utf8 + [255, 0, 0, 0, 255, 0]).write(to: URL(fileURLWithPath: dir + "/frames/a.ppm"))
        try write("not an image", to: dir + "/broken.png")
        let cams = """
            cameras:
              good_file: { source: frames/a.ppm, tasks: [ { task: <OD> } ] }
              good_folder: { source: frames, tasks: [ { task: <OD> } ] }
              empty_folder: { source: empty, tasks: [ { task: <OD> } ] }
              missing: { source: nowhere, tasks: [ { task: <OD> } ] }
              broken: { source: broken.png, tasks: [ { task: <OD> } ] }
              not_a_device: { source: /dev/null/x, tasks: [ { task: <OD> } ] }
              off: { source: gone.jpg, enabled: false }

            """
        let c = try parse(Self.yaml(model: "model:\n  path: \(Self.tinyModel)\n", cameras: cams), base: dir)
        let check = ConfigurationCheck(c, environment: [:], cores: 2)
        XCTAssertEqual(check.errors.map(\.path), ["cameras.empty_folder.source", "cameras.missing.source", "cameras.broken.source"])
        XCTAssertEqual(check.warnings.map(\.path), ["cameras.not_a_device.source"], "an absent device is retried, not fatal")
    }
}
