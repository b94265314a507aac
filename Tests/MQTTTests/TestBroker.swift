// A real Mosquitto broker for tests: its own free loopback port, config in a temp dir, stop and restart.
import Foundation
import MQTT
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Broker

/// Runs `/usr/sbin/mosquitto` on 127.0.0.1 with anonymous access and no persistence.
final class TestBroker {
    /// The loopback port the broker listens on (kept across restarts).
    let port: Int
    private let dir: URL
    private var process: Process?

    /// The temp dir holding the config, log and any files `configure` wrote.
    var directory: URL { dir }

    /// Picks a free port, writes the config and starts the broker. `configure` gets the temp dir and
    /// returns extra config lines placed after the listener line (TLS files, password_file, ...).
    init(anonymous: Bool = true, configure: (URL) throws -> [String] = { _ in [] }) throws {
        port = try freeLoopbackPort()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocellus-mqtt-\(getpid())-\(port)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let extra = try configure(dir)
        let conf = (["listener \(port) 127.0.0.1"] + extra +
                    ["allow_anonymous \(anonymous)", "persistence false"]).joined(separator: "\n") + "\n"
        try conf.write(to: dir.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }

    /// Starts the broker and waits until it accepts TCP connections.
    func start() throws {
        precondition(process == nil, "broker already running")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/mosquitto")
        p.arguments = ["-c", dir.appendingPathComponent("mosquitto.conf").path]
        let log = dir.appendingPathComponent("mosquitto.log")
        if !FileManager.default.fileExists(atPath: log.path) {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try runWithCleanSignalMask(p)
        process = p
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if canConnect(port: port) { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw NSError(domain: "TestBroker", code: 1,
                      userInfo: [NSLocalizedDescriptionKey: "mosquitto did not start on \(port): \(text)"])
    }

    /// Stops the broker (SIGTERM) and waits for it to exit.
    func stop() {
        guard let p = process else { return }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        process = nil
    }
}

// MARK: - Processes

/// Starts `p` from a fresh thread whose signal mask is empty. A child inherits the spawning thread's
/// mask, and Swift's dispatch and concurrency threads block SIGTERM, SIGHUP, SIGINT and SIGUSR1/2;
/// mosquitto 2.0 restores that inherited mask around epoll, so it would never see SIGTERM.
func runWithCleanSignalMask(_ p: Process) throws {
    final class Box: @unchecked Sendable { var error: Error? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    let t = Thread {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        do { try p.run() } catch { box.error = error }
        done.signal()
    }
    t.start()
    done.wait()
    if let e = box.error { throw e }
}

/// Runs `/bin/sh -c script` in `dir` and fails the caller if it exits non-zero.
func shell(_ script: String, in dir: URL) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    p.currentDirectoryURL = dir
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try runWithCleanSignalMask(p)
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw NSError(domain: "shell", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: script])
    }
}

/// A throwaway CA (`ca.crt`), a broker certificate for IP 127.0.0.1 signed by it (`server.crt`,
/// `server.key`) and an unrelated CA (`other-ca.crt`), all valid for one day. World-readable: a
/// broker started as root drops to the `mosquitto` user before reading them.
func makeTestCertificates(in dir: URL) throws {
    try shell("""
    set -e
    printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=ocellus-test-ca
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile san.ext
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.crt -days 1 -subj /CN=other-ca
    chmod 755 . && chmod 644 ./*
    """, in: dir)
}

// MARK: - Sockets

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it back, close).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var addr = loopback(port: 0)
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// True when something accepts a TCP connection on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = loopback(port: port)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    } == 0
}

/// sockaddr_in for 127.0.0.1:`port`.
func loopback(port: Int) -> sockaddr_in {
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = UInt16(port).bigEndian
    a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return a
}

// MARK: - Collecting and waiting

/// Thread-safe list of received messages.
final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [MQTTMessage] = []

    /// Appends one message.
    func add(_ m: MQTTMessage) { lock.lock(); items.append(m); lock.unlock() }
    /// A snapshot of everything received.
    var all: [MQTTMessage] { lock.lock(); defer { lock.unlock() }; return items }
}

/// Thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    /// Adds one.
    func bump() { lock.lock(); n += 1; lock.unlock() }
    /// The current value.
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held.
func eventually(_ timeout: Double = 10, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return condition()
}
