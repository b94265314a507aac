// MQTTClient against a real Mosquitto broker on loopback (TestBroker), plus a fake v3.1.1-only
// server for the protocol fallback and a child process killed with SIGKILL for the last will.
import Foundation
import XCTest
@testable import MQTT
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

final class MQTTClientTests: XCTestCase {
    // MARK: - Helpers

    private func client(_ id: String, _ broker: TestBroker, v5: Bool = true, capacity: Int = 1000,
                        will: MQTTWill? = nil) throws -> MQTTClient {
        try MQTTClient(clientID: id, host: "127.0.0.1", port: broker.port, keepalive: 10,
                       will: will, preferV5: v5, outboxCapacity: capacity)
    }

    private func connected(_ c: MQTTClient, _ version: MQTTProtocolVersion = .v5) async -> Bool {
        await eventually { c.state == .connected(version) }
    }

    /// Subscribes and waits until a probe message on the same filter comes back (SUBACK done).
    private func subscribeReady(_ c: MQTTClient, _ filter: String, probe: String, qos: Int = 1,
                                into inbox: Inbox) async throws {
        let seen = Counter()
        try c.subscribe(filter, qos: qos) { m in
            if m.topic == probe { seen.bump() } else if !m.topic.contains("/probe") { inbox.add(m) }
        }
        let ok = await eventually(5) {
            try? c.publish(topic: probe, string: "probe")
            return seen.value > 0
        }
        XCTAssertTrue(ok, "subscription \(filter) never became active")
    }

    // MARK: - Round trip

    func testPublishSubscribeRoundTripQoS0AndQoS1() async throws {
        let broker = try TestBroker()
        let sub = try client("sub", broker), pub = try client("pub", broker)
        try await sub.connect(); try await pub.connect()
        let ok1 = await connected(sub), ok2 = await connected(pub)
        XCTAssertTrue(ok1); XCTAssertTrue(ok2)
        let inbox = Inbox()
        try await subscribeReady(sub, "rt/#", probe: "rt/probe", qos: 1, into: inbox)

        try pub.publish(topic: "rt/zero", string: "q0", qos: 0)
        try pub.publish(topic: "rt/one", payload: [0, 1, 2, 255], qos: 1)
        let got = await eventually { inbox.all.count >= 2 }
        XCTAssertTrue(got)
        let msgs = inbox.all
        XCTAssertEqual(msgs.map(\.topic), ["rt/zero", "rt/one"])
        XCTAssertEqual(msgs[0].string, "q0")
        XCTAssertEqual(msgs[0].qos, 0)
        XCTAssertEqual(msgs[1].payload, [0, 1, 2, 255])
        XCTAssertEqual(msgs[1].qos, 1)
        XCTAssertFalse(msgs[1].retain)
        let confirmed = await eventually { pub.counters.confirmed == 2 && pub.counters.inFlight == 0 }
        XCTAssertTrue(confirmed, "\(pub.counters)")
        XCTAssertEqual(pub.counters.sent, 2)
        XCTAssertEqual(pub.counters.dropped, 0)
        sub.disconnect(); pub.disconnect()
        XCTAssertEqual(pub.state, .closed)
        XCTAssertThrowsError(try pub.publish(topic: "rt/late", string: "x"))
    }

    // MARK: - Retained, publish then disconnect

    func testRetainedMessageReachesLateSubscriberAfterPublishThenDisconnect() async throws {
        let broker = try TestBroker()
        let pub = try client("pub", broker)
        try await pub.connect()
        let up = await connected(pub)
        XCTAssertTrue(up)
        // Published and disconnected at once: disconnect() must drain the outbox first.
        try pub.publish(topic: "ret/state", string: "on", qos: 1, retain: true)
        pub.disconnect()
        XCTAssertEqual(pub.counters.confirmed, 1)

        let late = try client("late", broker)
        let inbox = Inbox()
        try late.subscribe("ret/#", qos: 1) { inbox.add($0) }
        try await late.connect()
        let got = await eventually { inbox.all.count == 1 }
        XCTAssertTrue(got)
        XCTAssertEqual(inbox.all.first?.topic, "ret/state")
        XCTAssertEqual(inbox.all.first?.string, "on")
        XCTAssertEqual(inbox.all.first?.retain, true)
        late.disconnect()
    }

    func testPublishBeforeConnackThenDisconnectStillDelivers() async throws {
        let broker = try TestBroker()
        let pub = try client("quick", broker)
        try await pub.connect()
        try pub.publish(topic: "quick/state", string: "early", qos: 1, retain: true)   // no CONNACK yet
        pub.disconnect()
        XCTAssertEqual(pub.counters.confirmed, 1, "\(pub.counters)")
        let late = try client("late", broker)
        let inbox = Inbox()
        try late.subscribe("quick/#", qos: 1) { inbox.add($0) }
        try await late.connect()
        let got = await eventually { inbox.all.first?.string == "early" }
        XCTAssertTrue(got)
        late.disconnect()
    }

    // MARK: - Broker restart

    func testBrokerRestartReconnectsAndOnConnectRepublishesRetainedState() async throws {
        let broker = try TestBroker()
        let c = try client("node", broker)
        let connects = Counter(), disconnects = Counter()
        c.setOnConnect { _ in
            connects.bump()
            try? c.publish(topic: "node/availability", string: "online", qos: 1, retain: true)
        }
        c.setOnDisconnect { _ in disconnects.bump() }
        try await c.connect()
        let first = await eventually { connects.value == 1 }
        XCTAssertTrue(first)

        broker.stop()
        let lost = await eventually { c.state == .connecting && disconnects.value >= 1 }
        XCTAssertTrue(lost, "client did not notice the broker going away: \(c.state)")
        try broker.start()   // same port; persistence false: retained state is gone
        let again = await eventually(40) { connects.value == 2 }
        XCTAssertTrue(again, "no reconnect after broker restart: \(c.state) \(c.counters)")

        let late = try client("late", broker)
        let inbox = Inbox()
        try late.subscribe("node/availability", qos: 1) { inbox.add($0) }
        try await late.connect()
        let back = await eventually { inbox.all.contains { $0.string == "online" && $0.retain } }
        XCTAssertTrue(back, "availability not republished after reconnect")
        XCTAssertEqual(c.counters.connects, 2)
        late.disconnect(); c.disconnect()
    }

    // MARK: - Outbox while the broker is down

    func testOutboxWhileBrokerDownDropsOldestThenFlushes() async throws {
        let broker = try TestBroker()
        let c = try client("pub", broker, capacity: 5)
        try await c.connect()
        let up = await connected(c)
        XCTAssertTrue(up)
        broker.stop()
        let down = await eventually { c.state == .connecting }
        XCTAssertTrue(down)

        let t0 = Date()
        for i in 0..<8 { try c.publish(topic: "q/\(i)", string: "m\(i)", qos: 1, retain: true) }
        let elapsed = Date().timeIntervalSince(t0)
        XCTAssertLessThan(elapsed, 0.5, "publish blocked while the broker was down")
        XCTAssertEqual(c.counters.queued, 5)
        XCTAssertEqual(c.counters.dropped, 3)
        XCTAssertEqual(c.counters.sent, 0)

        try broker.start()
        let flushed = await eventually(40) { c.counters.confirmed == 5 && c.counters.queued == 0 }
        XCTAssertTrue(flushed, "\(c.counters)")
        // Retained per topic: a late subscriber sees exactly the survivors, q/3..q/7.
        let late = try client("late", broker)
        let inbox = Inbox()
        try late.subscribe("q/#", qos: 1) { inbox.add($0) }
        try await late.connect()
        let got = await eventually { inbox.all.count >= 5 }
        XCTAssertTrue(got)
        try? await Task.sleep(nanoseconds: 200_000_000)
        XCTAssertEqual(Set(inbox.all.map(\.topic)), Set((3..<8).map { "q/\($0)" }))
        XCTAssertEqual(Set(inbox.all.map(\.string)), Set((3..<8).map { "m\($0)" }))
        late.disconnect(); c.disconnect()
    }

    func testClientStartedWhileBrokerDownQueuesAndConnectsLater() async throws {
        let broker = try TestBroker()
        broker.stop()
        let c = try client("early", broker, capacity: 3)
        try await c.connect()   // returns at once; libmosquitto keeps retrying
        for i in 0..<4 { try c.publish(topic: "e/\(i)", string: "\(i)", qos: 1, retain: true) }
        XCTAssertEqual(c.counters.dropped, 1)
        XCTAssertEqual(c.counters.queued, 3)
        try broker.start()
        let flushed = await eventually(40) { c.counters.confirmed == 3 }
        XCTAssertTrue(flushed, "\(c.counters)")
        c.disconnect()
    }

    func testInFlightBoundedAndOrderKept() async throws {
        let broker = try TestBroker()
        let sub = try client("sub", broker)
        let pub = try MQTTClient(clientID: "pub", host: "127.0.0.1", port: broker.port, outboxCapacity: 100, maxInFlight: 2)
        try await sub.connect(); try await pub.connect()
        let a = await connected(sub), b = await connected(pub)
        XCTAssertTrue(a); XCTAssertTrue(b)
        let inbox = Inbox()
        try await subscribeReady(sub, "b/#", probe: "b/probe", into: inbox)
        var maxSeen = 0
        for i in 0..<60 {
            try pub.publish(topic: "b/x", string: "\(i)", qos: 1)
            maxSeen = max(maxSeen, pub.counters.inFlight)
        }
        let done = await eventually {
            maxSeen = max(maxSeen, pub.counters.inFlight)
            return pub.counters.confirmed == 60
        }
        XCTAssertTrue(done, "\(pub.counters)")
        XCTAssertLessThanOrEqual(maxSeen, 2)
        XCTAssertEqual(pub.counters.dropped, 0)
        let got = await eventually { inbox.all.count == 60 }
        XCTAssertTrue(got)
        XCTAssertEqual(inbox.all.map(\.string), (0..<60).map { "\($0)" })
        sub.disconnect(); pub.disconnect()
    }

    func testDisconnectWhileBrokerDownReturnsWithinTimeout() async throws {
        let broker = try TestBroker()
        broker.stop()
        let c = try client("down", broker)
        try await c.connect()
        try c.publish(topic: "d/x", string: "never", qos: 1)
        let t0 = Date()
        c.disconnect(timeout: 0.5)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 2.5)
        XCTAssertEqual(c.state, .closed)
        XCTAssertEqual(c.counters.queued, 1)
        XCTAssertEqual(c.counters.sent, 0)
    }

    /// Bad settings throw at init (and a failed init frees its libmosquitto handle exactly once).
    func testInvalidSettingsThrow() throws {
        XCTAssertThrowsError(try MQTTClient(clientID: "x", host: "127.0.0.1", port: 0))
        XCTAssertThrowsError(try MQTTClient(clientID: "x", host: "127.0.0.1", outboxCapacity: 0))
        XCTAssertThrowsError(try MQTTClient(clientID: "x", host: "127.0.0.1", will: MQTTWill(topic: "w", payload: "", qos: 3)))
        for _ in 0..<3 {
            XCTAssertThrowsError(try MQTTClient(clientID: "x", host: "127.0.0.1", tls: MQTTTLSFiles(caFile: "/nonexistent/ca.crt")))
        }
        let c = try MQTTClient(clientID: "x", host: "127.0.0.1")
        XCTAssertThrowsError(try c.publish(topic: "a/+", string: "x"))
        XCTAssertThrowsError(try c.publish(topic: "a", string: "x", qos: 3))
        XCTAssertThrowsError(try c.subscribe("a/#/b") { _ in })
        XCTAssertEqual(c.state, .idle)
    }

    func testBackoffSchedule() {
        XCTAssertEqual((0..<8).map { MQTTClient.backoffDelay(attempt: $0) }, [1, 2, 4, 8, 16, 30, 30, 30])
    }

    // MARK: - MQTT 5 properties

    func testV5MessageExpiryAndContentTypeReachV5SubscriberOnly() async throws {
        let broker = try TestBroker()
        let pub = try client("pub", broker), sub5 = try client("sub5", broker)
        let sub3 = try client("sub3", broker, v5: false)
        try await pub.connect(); try await sub5.connect(); try await sub3.connect()
        let a = await connected(pub), b = await connected(sub5), d = await connected(sub3, .v311)
        XCTAssertTrue(a); XCTAssertTrue(b); XCTAssertTrue(d)
        let in5 = Inbox(), in3 = Inbox()
        try await subscribeReady(sub5, "v5/#", probe: "v5/probe", into: in5)
        try await subscribeReady(sub3, "v5/#", probe: "v5/probe3", into: in3)
        try pub.publish(topic: "v5/health", string: "{}", qos: 1, messageExpiry: 60, contentType: "application/json")
        let got = await eventually { in5.all.count == 1 && in3.all.count == 1 }
        XCTAssertTrue(got)
        let m5 = try XCTUnwrap(in5.all.first)
        XCTAssertEqual(m5.contentType, "application/json")
        let expiry = try XCTUnwrap(m5.messageExpiry)
        XCTAssertTrue((58...60).contains(expiry), "expiry \(expiry)")
        XCTAssertNil(in3.all.first?.contentType)
        XCTAssertNil(in3.all.first?.messageExpiry)

        // A 3.1.1 publisher drops the properties instead of failing.
        let pub3 = try client("pub3", broker, v5: false)
        try await pub3.connect()
        let e = await connected(pub3, .v311)
        XCTAssertTrue(e)
        try pub3.publish(topic: "v5/plain", string: "x", qos: 1, messageExpiry: 60, contentType: "text/plain")
        let got2 = await eventually { in5.all.count == 2 }
        XCTAssertTrue(got2)
        XCTAssertNil(in5.all.last?.contentType)
        XCTAssertNil(in5.all.last?.messageExpiry)
        pub.disconnect(); pub3.disconnect(); sub5.disconnect(); sub3.disconnect()
    }

    // MARK: - Username/password and TLS

    func testUsernamePasswordAcceptedAndWrongPasswordRefused() async throws {
        let broker = try TestBroker(anonymous: false) { dir in
            try shell("mosquitto_passwd -b -c passwd ocellus s3cret", in: dir)
            return ["password_file \(dir.appendingPathComponent("passwd").path)"]
        }
        let good = try MQTTClient(clientID: "good", host: "127.0.0.1", port: broker.port,
                                  username: "ocellus", password: "s3cret")
        let bad = try MQTTClient(clientID: "bad", host: "127.0.0.1", port: broker.port,
                                 username: "ocellus", password: "wrong")
        try await good.connect(); try await bad.connect()
        let ok = await connected(good)
        XCTAssertTrue(ok)
        let refused = await eventually { bad.counters.disconnects >= 1 }
        XCTAssertTrue(refused)
        XCTAssertEqual(bad.state, .connecting)
        XCTAssertEqual(bad.counters.connects, 0)
        good.disconnect(); bad.disconnect(timeout: 0.2)
    }

    func testTLSWithTheRightCAConnectsAndAWrongCAIsRefused() async throws {
        let broker = try TestBroker { dir in
            try makeTestCertificates(in: dir)
            return ["cafile \(dir.appendingPathComponent("ca.crt").path)",
                    "certfile \(dir.appendingPathComponent("server.crt").path)",
                    "keyfile \(dir.appendingPathComponent("server.key").path)"]
        }
        let ca = broker.directory.appendingPathComponent("ca.crt").path
        let other = broker.directory.appendingPathComponent("other-ca.crt").path
        let c = try MQTTClient(clientID: "tls", host: "127.0.0.1", port: broker.port, tls: MQTTTLSFiles(caFile: ca))
        let wrong = try MQTTClient(clientID: "tls-wrong", host: "127.0.0.1", port: broker.port, tls: MQTTTLSFiles(caFile: other))
        try await c.connect(); try await wrong.connect()
        let ok = await connected(c)
        XCTAssertTrue(ok, "\(c.state)")
        let inbox = Inbox()
        try await subscribeReady(c, "tls/#", probe: "tls/probe", into: inbox)
        try c.publish(topic: "tls/x", string: "secret", qos: 1)
        let got = await eventually { inbox.all.count == 1 }
        XCTAssertTrue(got)
        XCTAssertEqual(inbox.all.first?.string, "secret")
        try? await Task.sleep(nanoseconds: 1_500_000_000)
        XCTAssertEqual(wrong.counters.connects, 0)
        XCTAssertEqual(wrong.state, .connecting)
        XCTAssertThrowsError(try MQTTClient(clientID: "x", host: "127.0.0.1", tls: MQTTTLSFiles(caFile: "/nonexistent/ca.crt")))
        c.disconnect(); wrong.disconnect(timeout: 0.2)
    }

    // MARK: - Fallback to 3.1.1

    /// A fake broker that refuses MQTT 5 as a 3.1.1-only broker does (CONNACK `20 02 00 01`) and
    /// accepts the client's next CONNECT with CONNACK `20 02 00 00`; records each CONNECT's protocol level.
    func testFallsBackToV311WhenBrokerRefusesV5() async throws {
        let (c, levels) = try await refusingV5Once(allowV311Fallback: true)
        let fell = await eventually(15) { c.state == .connected(.v311) }
        XCTAssertTrue(fell, "state \(c.state)")
        XCTAssertEqual(levels.all.map(\.payload), [[0x10, 5], [0x10, 4]])
        c.disconnect(timeout: 1)
    }

    /// `broker.protocol: 5`: the same refusal is retried with MQTT 5, never 3.1.1.
    func testStaysOnV5WhenFallbackIsNotAllowed() async throws {
        let (c, levels) = try await refusingV5Once(allowV311Fallback: false)
        let twice = await eventually(15) { levels.all.count >= 2 }
        XCTAssertTrue(twice)
        XCTAssertEqual(levels.all.map(\.payload), [[0x10, 5], [0x10, 5]])
        XCTAssertNotEqual(c.state, .connected(.v311))
        c.disconnect(timeout: 1)
    }

    /// A client connecting to a fake server that refuses the first CONNECT as a 3.1.1-only broker
    /// refuses MQTT 5 and accepts the second; the protocol level of each CONNECT is recorded.
    private func refusingV5Once(allowV311Fallback: Bool) async throws -> (MQTTClient, Inbox) {
        let port = try freeLoopbackPort()
        let lfd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port: port)
        let b = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(lfd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(b, 0)
        XCTAssertEqual(listen(lfd, 4), 0)
        let levels = Inbox()
        let server = Thread {
            for reply: UInt8 in [1, 0] {
                let fd = accept(lfd, nil, nil)
                if fd < 0 { return }
                var buf = [UInt8](repeating: 0, count: 512)
                var n = 0
                while n < 9 {
                    let r = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + n, 512 - n, 0) }
                    if r <= 0 { break }
                    n += r
                }
                // Fixed header (1 byte + 1-byte length for a small CONNECT), then 00 04 'MQTT' level.
                let level = n >= 9 ? buf[8] : 0
                levels.add(MQTTMessage(topic: "connect", payload: [buf[0], level], qos: 0, retain: false,
                                       messageExpiry: nil, contentType: nil))
                _ = [0x20, 0x02, 0x00, reply].withUnsafeBytes { send(fd, $0.baseAddress, 4, 0) }
                if reply != 0 { close(fd) } else { usleep(3_000_000); close(fd) }
            }
        }
        server.start()
        let c = try MQTTClient(clientID: "fallback", host: "127.0.0.1", port: port, keepalive: 10,
                               allowV311Fallback: allowV311Fallback)
        try await c.connect()
        // The listening socket goes when the server thread has served both connections.
        Thread.detachNewThread { while levels.all.count < 2 { usleep(50_000) }; usleep(3_500_000); close(lfd) }
        return (c, levels)
    }

    // MARK: - Last will on SIGKILL

    /// Re-runs this test binary as a child that connects with a will and publishes `online`; the
    /// parent kills it with SIGKILL (no DISCONNECT is sent) and expects the broker to publish the will.
    func testLastWillDeliveredWhenClientProcessIsKilled() async throws {
        let broker = try TestBroker()
        let watcher = try client("watcher", broker)
        let inbox = Inbox()
        try watcher.subscribe("will/availability", qos: 1) { inbox.add($0) }
        try await watcher.connect()
        let up = await connected(watcher)
        XCTAssertTrue(up)

        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        child.arguments = ["MQTTTests.MQTTWillChild/testWillChildProcess"]
        var env = ProcessInfo.processInfo.environment
        env["OCELLUS_MQTT_WILL_CHILD_PORT"] = String(broker.port)
        child.environment = env
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try runWithCleanSignalMask(child)
        defer { if child.isRunning { kill(child.processIdentifier, SIGKILL) }; child.waitUntilExit() }

        let online = await eventually(30) { inbox.all.contains { $0.string == "online" } }
        XCTAssertTrue(online, "child never came online")
        XCTAssertFalse(inbox.all.contains { $0.string == "offline" })
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        let will = await eventually(10) { inbox.all.contains { $0.string == "offline" } }
        XCTAssertTrue(will, "no last will after SIGKILL: \(inbox.all.map(\.string))")
        watcher.disconnect()
    }
}

/// The child half of the last-will test; skipped unless the parent test started it.
final class MQTTWillChild: XCTestCase {
    func testWillChildProcess() async throws {
        guard let p = ProcessInfo.processInfo.environment["OCELLUS_MQTT_WILL_CHILD_PORT"], let port = Int(p) else {
            throw XCTSkip("runs only as the child of testLastWillDeliveredWhenClientProcessIsKilled")
        }
        let c = try MQTTClient(clientID: "will-child", host: "127.0.0.1", port: port, keepalive: 10,
                               will: MQTTWill(topic: "will/availability", payload: "offline", qos: 1, retain: true))
        c.setOnConnect { _ in try? c.publish(topic: "will/availability", string: "online", qos: 1, retain: true) }
        try await c.connect()
        try await Task.sleep(nanoseconds: 30_000_000_000)   // the parent kills us long before this
        c.disconnect()
    }
}
