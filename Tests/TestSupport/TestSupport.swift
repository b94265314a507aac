// Shared by the test targets that need a real broker: the broker itself is `MQTT.LocalBroker`
// (the demo uses it too); here are the helpers around it (shell scripts, throwaway certificates,
// a thread-safe inbox, polling).
import Foundation
import MQTT
#if canImport(Glibc)
import Glibc
#endif

/// The tests' name for a private Mosquitto on loopback.
public typealias TestBroker = LocalBroker

/// Runs `/bin/sh -c script` in `dir` and fails the caller if it exits non-zero.
public func shell(_ script: String, in dir: URL) throws {
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
public func makeTestCertificates(in dir: URL) throws {
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

// MARK: - Collecting and waiting

/// Thread-safe list of received messages.
public final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [MQTTMessage] = []

    public init() {}
    /// Appends one message.
    public func add(_ m: MQTTMessage) { lock.lock(); items.append(m); lock.unlock() }
    /// A snapshot of everything received.
    public var all: [MQTTMessage] { lock.lock(); defer { lock.unlock() }; return items }
}

/// Thread-safe counter.
public final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    public init() {}
    /// Adds one.
    public func bump() { lock.lock(); n += 1; lock.unlock() }
    /// The current value.
    public var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held.
public func eventually(_ timeout: Double = 10, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 20_000_000)
    }
    return condition()
}
