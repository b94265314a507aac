// Runs the real `ocellusd` executable against a real Mosquitto (TestBroker) on a free loopback
// port, with a test NOTIFY_SOCKET, a watcher subscribed to everything, and helpers to signal, kill
// and wait. The model is the tiny-pad fixture of the Florence-2 tests; the camera is the pattern.
import Foundation
import MQTT
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The package's root folder (this file is Tests/DaemonTests/DaemonHarness.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The tiny fixture model (random weights, real Florence-2 layout).
let fixtureModel = packageRoot.appendingPathComponent("Tests/Florence2Tests/Fixtures/tiny-pad/tiny-pad-fp32.gguf").path

/// The `ocellusd` built beside this test bundle (SwiftPM puts products and the test bundle in one folder).
func ocellusdExecutable() throws -> URL {
    var candidates: [URL] = []
    if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent().appendingPathComponent("ocellusd")) }
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ocellusd"))
    candidates.append(packageRoot.appendingPathComponent(".build/debug/ocellusd"))
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) { return found }
    throw XCTSkip("ocellusd is not built next to the tests (looked in \(candidates.map(\.path)))")
}

// MARK: - Notify socket

/// A datagram socket standing in for systemd's: the daemon's sd_notify messages, in order.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var items: [String] = []
    private var closed = false
    private let done = DispatchSemaphore(value: 0)

    init(path: String) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        precondition(bytes.count < MemoryLayout.size(ofValue: addr.sun_path), "socket path too long: \(path)")
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while !lock.withLock({ closed }) {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 {
                    let s = String(decoding: buf[0..<n], as: UTF8.self)
                    lock.withLock { items.append(s) }
                }
            }
            done.signal()
        }
        t.start()
    }

    /// Every datagram so far.
    var messages: [String] { lock.withLock { items } }

    /// Every `KEY=VALUE` line so far, in order.
    var assignments: [String] { messages.flatMap { $0.split(separator: "\n").map(String.init) } }

    func shutdown() {
        lock.withLock { closed = true }
        done.wait()
        close(fd)
        unlink(path)
    }
}

// MARK: - The daemon under test

final class DaemonUnderTest {
    let broker: TestBroker
    let dir: URL
    let configURL: URL
    let notify: NotifySocket
    let inbox = Inbox()
    private var watcher: MQTTClient?
    private(set) var process: Process?
    var logURL: URL { dir.appendingPathComponent("ocellusd.log") }

    /// MQTT user and password the broker requires (nil: anonymous).
    let auth: (user: String, password: String)?

    /// A broker, a temp folder with `config` written as ocellus.yaml (`PORT` and `MODEL` replaced),
    /// and a watcher subscribed to `#` before the daemon starts. With `auth` the broker refuses
    /// anonymous clients and knows that one user.
    init(config: String, auth: (user: String, password: String)? = nil) async throws {
        self.auth = auth
        if let a = auth {
            broker = try TestBroker(anonymous: false) { dir in
                try shell("mosquitto_passwd -b -c passwd '\(a.user)' '\(a.password)'", in: dir)
                return ["password_file \(dir.appendingPathComponent("passwd").path)"]
            }
        } else {
            broker = try TestBroker()
        }
        dir = URL(fileURLWithPath: "/tmp/ocellusd-test-\(getpid())-\(broker.port)")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        configURL = dir.appendingPathComponent("ocellus.yaml")
        notify = try NotifySocket(path: dir.appendingPathComponent("notify.sock").path)
        try write(config: config)
        watcher = try await subscriber("watch", into: inbox)
    }

    deinit {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        watcher?.disconnect(timeout: 0.5)
        notify.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }

    /// Rewrites the configuration file (`PORT`, `MODEL` replaced).
    func write(config: String) throws {
        let text = config.replacingOccurrences(of: "PORT", with: "\(broker.port)").replacingOccurrences(of: "MODEL", with: fixtureModel)
        try text.write(to: configURL, atomically: true, encoding: .utf8)
    }

    /// A client subscribed to `#` (SUBACK seen) collecting into `inbox`.
    func subscriber(_ id: String, into inbox: Inbox) async throws -> MQTTClient {
        let c = try MQTTClient(clientID: "\(id)-\(UUID().uuidString.prefix(8))", host: "127.0.0.1", port: broker.port, keepalive: 10,
                               username: auth?.user, password: auth?.password)
        let probe = "probe/\(id)/\(UUID().uuidString.prefix(8))"
        let seen = Counter()
        try c.subscribe("#", qos: 1) { m in
            if m.topic == probe { seen.bump() } else if !m.topic.hasPrefix("probe/") { inbox.add(m) }
        }
        try await c.connect()
        let ok = await eventually(10) {
            try? c.publish(topic: probe, string: "probe")
            return seen.value > 0
        }
        XCTAssertTrue(ok, "subscription never became active")
        return c
    }

    /// The retained messages a fresh subscriber gets, by topic (after `settle` seconds).
    func retainedNow(settle: Double = 1) async throws -> [String: MQTTMessage] {
        let box = Inbox()
        let c = try await subscriber("retained", into: box)
        try? await Task.sleep(nanoseconds: UInt64(settle * 1e9))
        c.disconnect(timeout: 0.5)
        var out: [String: MQTTMessage] = [:]
        for m in box.all where m.retain { out[m.topic] = m }
        return out
    }

    /// Starts `ocellusd --config` with NOTIFY_SOCKET (and `environment`).
    func start(environment: [String: String] = [:]) throws {
        let p = Process()
        p.executableURL = try ocellusdExecutable()
        p.arguments = ["--config", configURL.path]
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = notify.path
        for k in ["WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] { env[k] = nil }
        for (k, v) in environment { env[k] = v }
        p.environment = env
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        p.standardOutput = log
        p.standardError = log
        try runWithCleanSignalMask(p)
        process = p
    }

    var pid: Int32 { process?.processIdentifier ?? -1 }

    func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for the process to exit (up to `timeout` s); its status, or nil if it is still running.
    func waitExit(timeout: Double = 20) async -> Int32? {
        guard let p = process else { return nil }
        let ok = await eventually(timeout) { !p.isRunning }
        return ok ? p.terminationStatus : nil
    }

    /// The daemon's log so far (for failure messages).
    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Messages the watcher got on `topic`.
    func messages(_ topic: String) -> [MQTTMessage] { inbox.all.filter { $0.topic == topic } }

    /// Waits until the watcher has a message on `topic` matching `match`; returns it.
    func waitFor(_ topic: String, timeout: Double = 30, after: Int = 0,
                 _ match: (MQTTMessage) -> Bool = { _ in true }) async -> MQTTMessage? {
        var found: MQTTMessage?
        _ = await eventually(timeout) {
            found = messages(topic).dropFirst(after).first(where: match)
            return found != nil
        }
        return found
    }

    /// Waits until the notify socket has seen an assignment starting with `prefix` (after the
    /// first `after` assignments).
    func waitForNotify(_ prefix: String, after: Int = 0, timeout: Double = 30) async -> String? {
        var found: String?
        _ = await eventually(timeout) {
            found = notify.assignments.dropFirst(after).first { $0.hasPrefix(prefix) }
            return found != nil
        }
        return found
    }
}

/// A message's payload as a JSON object.
func json(_ m: MQTTMessage?) -> [String: Any]? {
    guard let m else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(m.payload))) as? [String: Any]
}
