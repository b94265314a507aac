// The daemon end to end (issue 5, Tests): the real ocellusd process, a real Mosquitto on a free
// loopback port, the tiny fixture model and the synthetic camera. Messages and retained state as
// the README documents them, the last will on kill -9, republishing after a broker restart, SIGHUP
// with a changed prompt and with a broken file, sd_notify on a test NOTIFY_SOCKET, the watchdog,
// and RSS over a long run of inferences.
import Foundation
import MQTT
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

struct DaemonDidNotStart: Error {}

final class DaemonProcessTests: XCTestCase {
    /// Two tasks on one pattern camera, short intervals, a small decode budget; discovery on.
    static func config(groundingText: String = "a red square", interval: String = "0.5s", health: String = "1s",
                       extraCamera: String = "") -> String {
        """
        node_id: test
        broker:
          host: 127.0.0.1
          port: PORT
          keepalive: 10
        model:
          path: MODEL
          max_new_tokens: 8
          num_beams: 1
          threads: 1
        cameras:
          cam:
            source: pattern
            size: 96x64
            fps: 10
            tasks:
              - task: <CAPTION>
                interval: \(interval)
              - task: <CAPTION_TO_PHRASE_GROUNDING>
                name: grounding
                text: \(groundingText)
                interval: \(interval)
        \(extraCamera)
        health:
          interval: \(health)
        homeassistant:
          discovery: true
        """
    }

    private func started(_ config: String = DaemonProcessTests.config(), environment: [String: String] = [:]) async throws -> DaemonUnderTest {
        _ = try ocellusdExecutable()
        let d = try await DaemonUnderTest(config: config)
        try d.start(environment: environment)
        let ready = await d.waitForNotify("READY=1")
        guard ready != nil else {
            XCTFail("no READY=1; daemon log:\n\(d.log)")
            throw DaemonDidNotStart()
        }
        return d
    }

    // MARK: - Messages and retained state

    func testPublishesDocumentedMessagesAndRetainedStateThenStopsCleanly() async throws {
        let d = try await started()
        let caption = await d.waitFor("ocellus/test/cam/caption")
        let grounding = await d.waitFor("ocellus/test/cam/grounding")
        let health = await d.waitFor("ocellus/test/health") { (json($0)?["cameras"] as? [String: Any]) != nil }
        guard let caption, let grounding, let health else { return XCTFail("missing results; log:\n\(d.log)") }

        // Result payloads as the README documents them.
        let c = try XCTUnwrap(json(caption))
        XCTAssertEqual(c["camera"] as? String, "cam")
        XCTAssertEqual(c["task"] as? String, "<CAPTION>")
        XCTAssertNotNil(c["text"] as? String)
        XCTAssertNil(c["objects"])
        XCTAssertEqual(c["model"] as? String, "tiny-pad-fp32.gguf")
        let frame = try XCTUnwrap(c["frame"] as? [String: Any])
        XCTAssertEqual(frame["w"] as? Int, 96)
        XCTAssertEqual(frame["h"] as? Int, 64)
        XCTAssertNotNil(frame["seq"] as? Int)
        let ts = try XCTUnwrap(c["ts"] as? Double)
        XCTAssertEqual(ts, Date().timeIntervalSince1970, accuracy: 60, "ts is wall-clock seconds")
        let latency = try XCTUnwrap(c["latency_s"] as? Double)
        XCTAssertGreaterThan(latency, 0)
        XCTAssertEqual(caption.contentType, "application/json")
        let g = try XCTUnwrap(json(grounding))
        XCTAssertEqual(g["task"] as? String, "<CAPTION_TO_PHRASE_GROUNDING>")
        XCTAssertEqual(g["prompt"] as? String, "a red square")
        XCTAssertNotNil(g["objects"] as? [Any], "grounding carries objects (maybe empty with random weights)")
        XCTAssertNil(g["score"])

        let h = try XCTUnwrap(json(health))
        for key in ["ts", "uptime_s", "rss_bytes", "queue_depth", "outbox_dropped", "cameras"] { XCTAssertNotNil(h[key], key) }
        let cam = try XCTUnwrap((h["cameras"] as? [String: Any])?["cam"] as? [String: Any])
        XCTAssertEqual(cam["status"] as? String, "online")
        for key in ["fps", "dropped_frames", "reconnects", "latency_s"] { XCTAssertNotNil(cam[key], key) }
        XCTAssertNotNil(health.messageExpiry, "health carries an MQTT 5 message expiry")

        // Wait until the caption's latency is in the health message (p50 and p95 per task).
        let withLatency = await d.waitFor("ocellus/test/health") { m in
            let l = ((json(m)?["cameras"] as? [String: Any])?["cam"] as? [String: Any])?["latency_s"] as? [String: [String: Double]]
            return l?["caption"]?["p50"] != nil && l?["caption"]?["p95"] != nil
        }
        XCTAssertNotNil(withLatency, "latency p50/p95 per task in health")

        // Retained: availability, state, camera status, caption, health, discovery; grounding is not.
        let retained = try await d.retainedNow()
        XCTAssertEqual(retained["ocellus/test/availability"]?.string, "online")
        XCTAssertEqual(retained["ocellus/test/cam/status"]?.string, "online")
        XCTAssertNotNil(retained["ocellus/test/cam/caption"], "captions are retained")
        XCTAssertNil(retained["ocellus/test/cam/grounding"], "grounding results are events, not retained")
        XCTAssertNotNil(retained["ocellus/test/health"])
        let state = try XCTUnwrap(json(retained["ocellus/test/state"]))
        XCTAssertEqual(state["status"] as? String, "running")
        let disc = try XCTUnwrap(json(retained["homeassistant/device/ocellus_test_cam/config"]), "discovery retained")
        let cmps = try XCTUnwrap(disc["cmps"] as? [String: [String: Any]])
        XCTAssertEqual(cmps["caption"]?["state_topic"] as? String, "ocellus/test/cam/caption")
        XCTAssertEqual(cmps["grounding"]?["p"] as? String, "event")

        // STATUS= summarizes health.
        XCTAssertTrue(d.notify.assignments.contains { $0.hasPrefix("STATUS=") && $0.contains("cameras online") }, "\(d.notify.assignments)")

        // SIGTERM: STOPPING=1, offline published, exit 0.
        d.signal(SIGTERM)
        let status = await d.waitExit()
        XCTAssertEqual(status, 0, "clean exit; log:\n\(d.log)")
        let v1 = await d.waitForNotify("STOPPING=1", timeout: 2)
        XCTAssertNotNil(v1)
        let after = try await d.retainedNow()
        XCTAssertEqual(after["ocellus/test/availability"]?.string, "offline")
        XCTAssertEqual(json(after["ocellus/test/state"])?["status"] as? String, "stopping")
    }

    // MARK: - Last will

    func testKill9BringsTheLastWill() async throws {
        let d = try await started()
        let online = await d.waitFor("ocellus/test/availability") { $0.string == "online" }
        XCTAssertNotNil(online)
        d.signal(SIGKILL)
        _ = await d.waitExit()
        let offline = await d.waitFor("ocellus/test/availability", timeout: 15) { $0.string == "offline" }
        XCTAssertNotNil(offline, "the broker publishes the last will when the daemon dies")
        let retained = try await d.retainedNow()
        XCTAssertEqual(retained["ocellus/test/availability"]?.string, "offline", "the will is retained")
        XCTAssertFalse(d.notify.assignments.contains("STOPPING=1"), "kill -9 cannot say STOPPING")
    }

    // MARK: - Credentials

    func testPasswordFromASystemdCredentialLogsInAndIsNeverLogged() async throws {
        let secret = "s3cret-\(UInt32.random(in: 1000...9999))"
        let config = Self.config().replacingOccurrences(of: "  keepalive: 10\n", with: "  keepalive: 10\n  username: ocellus\n  password_credential: mqtt_password\n")
        _ = try ocellusdExecutable()
        let d = try await DaemonUnderTest(config: config, auth: ("ocellus", secret))
        let creds = d.dir.appendingPathComponent("credentials")
        try FileManager.default.createDirectory(at: creds, withIntermediateDirectories: true)
        try (secret + "\n").write(to: creds.appendingPathComponent("mqtt_password"), atomically: true, encoding: .utf8)
        try d.start(environment: ["CREDENTIALS_DIRECTORY": creds.path])
        let online = await d.waitFor("ocellus/test/availability") { $0.string == "online" }
        XCTAssertNotNil(online, "the daemon logged in with the credential; log:\n\(d.log)")
        let v0 = await d.waitFor("ocellus/test/cam/caption")
        XCTAssertNotNil(v0)
        d.signal(SIGTERM)
        let v1 = await d.waitExit()
        XCTAssertEqual(v1, 0)
        XCTAssertFalse(d.log.contains(secret), "the password is never logged")
        XCTAssertFalse(d.inbox.all.contains { $0.string.contains(secret) }, "nor published")
    }

    // MARK: - Broker restart

    func testBrokerRestartBringsAvailabilityAndRetainedStateBack() async throws {
        let d = try await started()
        let caption = await d.waitFor("ocellus/test/cam/caption")
        XCTAssertNotNil(caption, "log:\n\(d.log)")
        d.broker.stop()
        try d.broker.start()   // no persistence: retained state is gone until the daemon republishes it
        var retained: [String: MQTTMessage] = [:]
        var back = false
        let deadline = Date().addingTimeInterval(40)
        while !back, Date() < deadline {
            // a fresh subscriber each round; the daemon reconnects with backoff (1, 2, 4 s ...)
            retained = try await d.retainedNow(settle: 1)
            back = retained["ocellus/test/availability"]?.string == "online" && retained["ocellus/test/cam/caption"] != nil
        }
        XCTAssertTrue(back, "retained after restart: \(retained.keys.sorted()); log:\n\(d.log)")
        XCTAssertEqual(retained["ocellus/test/cam/status"]?.string, "online")
        XCTAssertNotNil(retained["homeassistant/device/ocellus_test_cam/config"])
        XCTAssertNil(retained["ocellus/test/cam/grounding"])
        d.signal(SIGTERM)
        let v2 = await d.waitExit()
        XCTAssertEqual(v2, 0)
    }

    // MARK: - Reload

    func testSighupWithChangedPromptChangesResultsWithoutRestart() async throws {
        let d = try await started()
        let pid = d.pid
        let first = await d.waitFor("ocellus/test/cam/grounding")
        XCTAssertEqual(json(first)?["prompt"] as? String, "a red square", "log:\n\(d.log)")

        try d.write(config: Self.config(groundingText: "a blue circle",
                                        extraCamera: "  yard:\n    source: pattern\n    size: 64x48\n    fps: 5\n    tasks:\n      - task: <OD>\n        interval: 1s"))
        let before = d.notify.assignments.count
        let seen = d.messages("ocellus/test/cam/grounding").count
        d.signal(SIGHUP)
        let reloading = await d.waitForNotify("RELOADING=1", after: before)
        XCTAssertNotNil(reloading)
        let v3 = await d.waitForNotify("MONOTONIC_USEC=", after: before)
        XCTAssertNotNil(v3, "RELOADING=1 carries MONOTONIC_USEC")
        let v4 = await d.waitForNotify("READY=1", after: before)
        XCTAssertNotNil(v4, "READY=1 after the reload")
        let changed = await d.waitFor("ocellus/test/cam/grounding", after: seen) { json($0)?["prompt"] as? String == "a blue circle" }
        XCTAssertNotNil(changed, "the new prompt is used; log:\n\(d.log)")
        // The added camera comes up; the first one was not reopened.
        let v5 = await d.waitFor("ocellus/test/yard/status") { $0.string == "online" }
        XCTAssertNotNil(v5)
        let v6 = await d.waitFor("ocellus/test/yard/od")
        XCTAssertNotNil(v6)
        XCTAssertEqual(d.pid, pid)
        XCTAssertTrue(d.process?.isRunning ?? false, "no restart")
        XCTAssertEqual(d.log.components(separatedBy: "camera open camera=cam").count - 1, 1, "cam was opened once: \(d.log)")
        XCTAssertEqual(d.log.components(separatedBy: "model loaded beams").count - 1, 1, "the model was not reloaded")

        // A changed camera (yard's size) reopens that camera alone.
        try d.write(config: Self.config(groundingText: "a blue circle",
                                        extraCamera: "  yard:\n    source: pattern\n    size: 80x60\n    fps: 5\n    tasks:\n      - task: <OD>\n        interval: 1s"))
        let seenYard = d.messages("ocellus/test/yard/od").count
        d.signal(SIGHUP)
        let resized = await d.waitFor("ocellus/test/yard/od", after: seenYard) { (json($0)?["frame"] as? [String: Any])?["w"] as? Int == 80 }
        XCTAssertNotNil(resized, "yard reopened at the new size; log:\n\(d.log)")
        XCTAssertEqual(d.log.components(separatedBy: "camera open camera=yard").count - 1, 2, "yard was reopened")
        XCTAssertEqual(d.log.components(separatedBy: "camera open camera=cam").count - 1, 1, "cam was not")
        d.signal(SIGTERM)
        let v7 = await d.waitExit()
        XCTAssertEqual(v7, 0)
    }

    func testSighupWithChangedModelSwapsItAndRemovedCamerasAreCleared() async throws {
        let yard = "  yard:\n    source: pattern\n    size: 64x48\n    fps: 5\n    tasks:\n      - task: <CAPTION>\n        interval: 1s"
        let porch = "  porch:\n    source: pattern\n    tasks:\n      - task: <OD>"
        let d = try await started(Self.config(extraCamera: yard + "\n" + porch))
        let v101 = await d.waitFor("ocellus/test/yard/caption")
        XCTAssertNotNil(v101, "log:\n\(d.log)")
        let v102 = await d.waitFor("ocellus/test/porch/status") { $0.string == "online" }
        XCTAssertNotNil(v102)
        // The model section changes (fewer new tokens), yard is removed, porch is disabled.
        try d.write(config: Self.config(extraCamera: porch + "\n    enabled: false").replacingOccurrences(of: "max_new_tokens: 8", with: "max_new_tokens: 6"))
        let before = d.notify.assignments.count
        d.signal(SIGHUP)
        let v103 = await d.waitForNotify("READY=1", after: before)
        XCTAssertNotNil(v103)
        let swapped = await eventually(20) { d.log.contains("model swapped") }
        XCTAssertTrue(swapped, "log:\n\(d.log)")
        let v104 = await d.waitFor("ocellus/test/porch/status") { $0.string == "disabled" }
        XCTAssertNotNil(v104)
        let seen = d.messages("ocellus/test/cam/caption").count
        let v105 = await d.waitFor("ocellus/test/cam/caption", after: seen)
        XCTAssertNotNil(v105, "cam keeps publishing with the new model")
        let retained = try await d.retainedNow()
        XCTAssertNil(retained["ocellus/test/yard/status"], "a removed camera's retained status is cleared")
        XCTAssertNil(retained["ocellus/test/yard/caption"], "and its retained results")
        XCTAssertNil(retained["homeassistant/device/ocellus_test_yard/config"], "and its discovery")
        XCTAssertEqual(retained["ocellus/test/porch/status"]?.string, "disabled")
        XCTAssertEqual(d.log.components(separatedBy: "camera open camera=cam").count - 1, 1, "cam was not reopened")
        d.signal(SIGTERM)
        let v106 = await d.waitExit()
        XCTAssertEqual(v106, 0)
    }

    func testSighupWithBrokenFileKeepsOldConfigurationAndReportsTheError() async throws {
        let d = try await started()
        let v8 = await d.waitFor("ocellus/test/cam/grounding")
        XCTAssertNotNil(v8)
        // A typo in a task token: the whole file is rejected.
        try d.write(config: Self.config(groundingText: "a blue circle").replacingOccurrences(of: "task: <CAPTION>\n", with: "task: <CAPTON>\n"))
        let before = d.notify.assignments.count
        let healthSeen = d.messages("ocellus/test/health").count
        d.signal(SIGHUP)
        let v9 = await d.waitForNotify("READY=1", after: before)
        XCTAssertNotNil(v9)
        let reported = await d.waitFor("ocellus/test/health", after: healthSeen) { (json($0)?["last_error"] as? String)?.contains("reload rejected") == true }
        let error = json(reported)?["last_error"] as? String
        XCTAssertNotNil(error, "the health topic reports the rejected reload; log:\n\(d.log)")
        XCTAssertTrue(error?.contains("cameras.cam.tasks[0].task") == true, "the error names the key path: \(error ?? "nil")")
        XCTAssertTrue(d.notify.assignments.dropFirst(before).contains { $0.hasPrefix("STATUS=") && $0.contains("reload rejected") },
                      "STATUS= reports it: \(d.notify.assignments)")
        // The old configuration keeps publishing.
        let seen = d.messages("ocellus/test/cam/grounding").count
        let still = await d.waitFor("ocellus/test/cam/grounding", after: seen) { json($0)?["prompt"] as? String == "a red square" }
        XCTAssertNotNil(still, "results go on with the old prompt")
        XCTAssertTrue(d.process?.isRunning ?? false)

        // A fixed file clears the error.
        try d.write(config: Self.config())
        let healthSeen2 = d.messages("ocellus/test/health").count
        d.signal(SIGHUP)
        let cleared = await d.waitFor("ocellus/test/health", after: healthSeen2) { json($0)?["last_error"] == nil }
        XCTAssertNotNil(cleared)
        d.signal(SIGTERM)
        let v10 = await d.waitExit()
        XCTAssertEqual(v10, 0)
    }

    // MARK: - systemd

    func testWatchdogPingsWhileTheLoopsProgress() async throws {
        let d = try await started(environment: ["WATCHDOG_USEC": "1000000"])
        let v11 = await d.waitFor("ocellus/test/cam/caption")
        XCTAssertNotNil(v11)
        let pings = await eventually(10) { d.notify.assignments.filter { $0 == "WATCHDOG=1" }.count >= 4 }
        XCTAssertTrue(pings, "WATCHDOG=1 every half interval: \(d.notify.assignments.filter { $0 == "WATCHDOG=1" }.count); log:\n\(d.log)")
        d.signal(SIGTERM)
        let v12 = await d.waitExit()
        XCTAssertEqual(v12, 0)
        let sequence = d.notify.assignments.filter { ["READY=1", "STOPPING=1"].contains($0) }
        XCTAssertEqual(sequence, ["READY=1", "STOPPING=1"])
    }

    func testBadConfigurationFailsStartWithTheKeyPath() async throws {
        let d = try await DaemonUnderTest(config: "node_id: test\nmodel:\n  path: /nonexistent/model.gguf\ncameras:\n  cam: { source: pattern, tasks: [ { task: <CAPTION> } ] }\n")
        try d.start()
        let status = await d.waitExit()
        XCTAssertEqual(status, 1)
        XCTAssertTrue(d.log.contains("model.path"), d.log)
        XCTAssertFalse(d.notify.assignments.contains("READY=1"))
    }

    // MARK: - The README's first command

    func testDemoRunsOnItsOwnBrokerAndPrintsTheMessages() async throws {
        let p = Process()
        p.executableURL = try ocellusdExecutable()
        p.arguments = ["--config", packageRoot.appendingPathComponent("Configs/demo.yaml").path, "--demo", "--run-for", "8"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { env[k] = nil }
        p.environment = env
        try runWithCleanSignalMask(p)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: stdout, as: UTF8.self)
        let log = String(decoding: stderr, as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, log)
        XCTAssertTrue(text.contains("demo: Mosquitto on 127.0.0.1:"), text)
        XCTAssertTrue(text.contains("ocellus/demo/availability online"), text)
        XCTAssertTrue(text.contains("ocellus/demo/demo/status online"), text)
        XCTAssertTrue(text.contains("ocellus/demo/demo/caption {"), text)
        XCTAssertTrue(text.contains("ocellus/demo/health {"), text)
        XCTAssertTrue(text.contains("ocellus/demo/availability offline"), "a clean stop publishes offline: \(text)")
    }

    // MARK: - Memory over a long run

    /// Resident set of `pid` in bytes (VmRSS).
    private func rss(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    func testLongRunRSSGrowthStaysUnderOneMegabyte() async throws {
        let warmup = 40, measured = Int(ProcessInfo.processInfo.environment["OCELLUS_LONG_RUN"] ?? "") ?? 300
        let d = try await started(Self.config(interval: "0.1s"))
        let results = { d.inbox.all.filter { $0.topic.hasPrefix("ocellus/test/cam/") && !$0.topic.hasSuffix("/status") }.count }
        let v13 = await eventually(300) { results() >= warmup }
        XCTAssertTrue(v13, "warm-up; log:\n\(d.log)")
        let start = rss(d.pid), startCount = results()
        let v14 = await eventually(1200) { results() >= startCount + measured }
        XCTAssertTrue(v14, "long run")
        let end = rss(d.pid), endCount = results()
        let growth = end - start
        print("long run: \(endCount - startCount) inferences after \(startCount) of warm-up; RSS \(start) -> \(end) bytes, growth \(growth) bytes")
        XCTAssertLessThan(growth, 1 << 20, "RSS grew \(growth) bytes over \(endCount - startCount) inferences")
        d.signal(SIGTERM)
        let v15 = await d.waitExit()
        XCTAssertEqual(v15, 0)
    }
}
