// The notify protocol on a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
import Foundation
import XCTest
@testable import Daemon

final class SystemdTests: XCTestCase {
    /// A bound datagram socket at a temporary path, with NOTIFY_SOCKET pointing at it.
    private final class FakeSystemd {
        let path: String
        let fd: Int32

        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw NSError(domain: "socket", code: Int(errno)) }
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() where i < raw.count - 1 { raw[i] = b }
            }
            let rc = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setenv("NOTIFY_SOCKET", path, 1)
        }

        /// The next datagram, or nil after 2 s.
        func receive() -> String? {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            guard n > 0 else { return nil }
            return String(decoding: buf[0..<n], as: UTF8.self)
        }

        deinit {
            close(fd)
            unlink(path)
            unsetenv("NOTIFY_SOCKET")
        }
    }

    func testReadyReloadStoppingStatusAndWatchdogReachTheSocket() throws {
        let sd = try FakeSystemd()
        let n = SystemdNotifier()
        XCTAssertTrue(n.isActive)
        n.ready(status: "2 cameras\nmodel loaded")
        XCTAssertEqual(sd.receive(), "READY=1\nSTATUS=2 cameras model loaded")
        let before = SystemdNotifier.monotonicMicroseconds()
        n.reloading()
        let msg = try XCTUnwrap(sd.receive())
        let lines = msg.split(separator: "\n")
        XCTAssertEqual(lines.first, "RELOADING=1")
        let usec = try XCTUnwrap(UInt64(lines.last!.dropFirst("MONOTONIC_USEC=".count)))
        XCTAssertGreaterThanOrEqual(usec, before)
        XCTAssertLessThan(usec - before, 5_000_000)
        n.status("reload failed: cameras.porch.fps: must be positive")
        XCTAssertEqual(sd.receive(), "STATUS=reload failed: cameras.porch.fps: must be positive")
        n.watchdogPing()
        XCTAssertEqual(sd.receive(), "WATCHDOG=1")
        n.stopping()
        XCTAssertEqual(sd.receive(), "STOPPING=1")
    }

    func testNothingIsSentWithoutASocket() {
        unsetenv("NOTIFY_SOCKET")
        XCTAssertFalse(SystemdNotifier().isActive)
        SystemdNotifier().ready()  // must not crash or block
    }

    func testWatchdogIntervalFollowsTheEnvironment() {
        setenv("WATCHDOG_USEC", "30000000", 1)
        setenv("WATCHDOG_PID", "\(getpid())", 1)
        XCTAssertEqual(SystemdNotifier.watchdogInterval(), .seconds(30))
        setenv("WATCHDOG_PID", "1", 1)  // another process's watchdog
        XCTAssertNil(SystemdNotifier.watchdogInterval())
        unsetenv("WATCHDOG_USEC")
        unsetenv("WATCHDOG_PID")
        XCTAssertNil(SystemdNotifier.watchdogInterval())
    }

    func testWatchdogPingsOnlyWhenEveryLoopProgressed() throws {
        let sd = try FakeSystemd()
        let w = ProgressWatchdog()
        w.progressed(.capture)
        w.progressed(.inference)
        w.progressed(.publish)
        XCTAssertTrue(w.check().pinged)
        XCTAssertEqual(sd.receive(), "WATCHDOG=1")
        w.progressed(.capture)
        w.progressed(.publish)  // inference is stuck
        let r = w.check()
        XCTAssertFalse(r.pinged)
        XCTAssertEqual(r.stalled, [.inference])
        w.progressed(.capture)
        w.progressed(.inference)
        w.progressed(.publish)
        XCTAssertTrue(w.check().pinged)
        XCTAssertEqual(sd.receive(), "WATCHDOG=1")
    }
}
