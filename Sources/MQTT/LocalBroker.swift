// A private Mosquitto broker on loopback: a free port, its config and log in a temporary folder,
// stop and restart on the same port. The daemon's demo (`ocellusd --demo`) runs one so that the
// README's first command needs no broker of the user's; the tests run one per case.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `mosquitto` on 127.0.0.1 with no persistence (a restart forgets retained messages, as a
/// broker without persistence does in the field).
public final class LocalBroker: @unchecked Sendable {
    /// The loopback port the broker listens on (kept across restarts).
    public let port: Int
    private let dir: URL
    private let executable: String
    private var process: Process?

    /// The temporary folder holding `mosquitto.conf`, `mosquitto.log` and any files `configure` wrote.
    public var directory: URL { dir }

    /// The broker's log so far (for error messages).
    public var log: String { (try? String(contentsOf: dir.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? "" }

    /// Picks a free port, writes the config and starts the broker. `configure` gets the folder and
    /// returns extra config lines placed after the listener line (TLS files, password_file, ...).
    /// - Throws: when no `mosquitto` executable exists (`apt-get install mosquitto`) or it does not
    ///   start listening within 10 s (the error carries its log).
    public init(anonymous: Bool = true, configure: (URL) throws -> [String] = { _ in [] }) throws {
        guard let exe = LocalBroker.findExecutable() else {
            throw LocalBrokerError("no mosquitto executable in /usr/sbin, /usr/bin or $PATH; install it with `apt-get install mosquitto`")
        }
        executable = exe
        port = try freeLoopbackPort()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocellus-mosquitto-\(getpid())-\(port)")
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

    /// `mosquitto` in /usr/sbin (Debian's place), /usr/bin or on `$PATH`.
    static func findExecutable() -> String? {
        var dirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
        dirs += (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        return dirs.map { ($0 as NSString).appendingPathComponent("mosquitto") }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts the broker and waits until it accepts TCP connections.
    public func start() throws {
        precondition(process == nil, "broker already running")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = ["-c", dir.appendingPathComponent("mosquitto.conf").path]
        let logURL = dir.appendingPathComponent("mosquitto.log")
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: logURL)
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
        throw LocalBrokerError("mosquitto did not start on 127.0.0.1:\(port): \(log)")
    }

    /// Stops the broker (SIGTERM) and waits for it to exit.
    public func stop() {
        guard let p = process else { return }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        process = nil
    }
}

/// Why a local broker could not run.
public struct LocalBrokerError: Error, CustomStringConvertible {
    /// What went wrong.
    public let description: String
    init(_ d: String) { description = d }
}

// MARK: - Processes

/// Starts `p` from a fresh thread whose signal mask is empty. A child inherits the spawning thread's
/// mask, and Swift's dispatch and concurrency threads block SIGTERM, SIGHUP, SIGINT and SIGUSR1/2;
/// mosquitto 2.0 restores that inherited mask around epoll, so it would never see SIGTERM.
public func runWithCleanSignalMask(_ p: Process) throws {
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

// MARK: - Sockets

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it back, close).
public func freeLoopbackPort() throws -> Int {
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
public func canConnect(port: Int) -> Bool {
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
