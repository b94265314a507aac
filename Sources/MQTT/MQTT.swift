// MQTT client over libmosquitto (mirrors the practice in edge-daemon.md §6: one network thread,
// reconnect with exponential backoff, v5 preferred with 3.1.1 fallback, republish on every connect).
//
// Threads: our network thread (`runNetwork`) drives mosquitto_loop, and libmosquitto calls the C
// callbacks (top-level functions at the end of this file) on it. They only update state under
// `cond` and hand work to two serial queues: `io` (every publish/subscribe call into libmosquitto,
// so the outbox drains in order) and `handlers` (user code: onConnect, onDisconnect and message
// handlers never run on the network thread; they may publish, and a slow one delays only the others).
//
// Outbox policy (bounded; a broker that is down never blocks the caller):
// - `publish` appends to the outbox and returns at once.
// - The outbox is drained into libmosquitto only while connected and while fewer than
//   `maxInFlight` of our messages are still unconfirmed inside libmosquitto (confirmed = its
//   on_publish fired: QoS 0 written to the socket, QoS 1 PUBACK, QoS 2 PUBCOMP). libmosquitto's
//   own queue is unbounded (edge-daemon.md §6), so this keeps it at most `maxInFlight` deep.
// - When the outbox holds `outboxCapacity` messages, the OLDEST is dropped and `dropped` counted.
// - A QoS 0 message that libmosquitto refuses (no connection) goes back to the outbox front.
//   QoS 0 messages lost inside libmosquitto when the socket breaks are counted in `lostQoS0`;
//   QoS 1/2 messages stay in libmosquitto and are resent after reconnect.
import CMosquitto
import CMosquittoShim
import Foundation
import Logging

// MARK: - Public types

/// The MQTT protocol version a connection uses.
public enum MQTTProtocolVersion: Sendable, Equatable {
    /// MQTT 5.0 (message expiry, content type available).
    case v5
    /// MQTT 3.1.1.
    case v311
}

/// The client's connection state.
public enum MQTTConnectionState: Sendable, Equatable {
    /// Created, `connect()` not called yet.
    case idle
    /// Trying to (re)connect; publishes go to the outbox.
    case connecting
    /// Connected with the given protocol.
    case connected(MQTTProtocolVersion)
    /// `disconnect()` finished; the client cannot be used again.
    case closed
}

/// A message the broker delivered to a subscription.
public struct MQTTMessage: Sendable, Equatable {
    /// The topic the message was published on.
    public let topic: String
    /// The payload bytes.
    public let payload: [UInt8]
    /// The QoS it was delivered with.
    public let qos: Int
    /// True when the broker delivered it as a retained message.
    public let retain: Bool
    /// MQTT 5 message expiry interval in seconds (remaining), if present.
    public let messageExpiry: UInt32?
    /// MQTT 5 content type, if present.
    public let contentType: String?

    /// The payload decoded as UTF-8 (invalid bytes replaced).
    public var string: String { String(decoding: payload, as: UTF8.self) }
}

/// The last will the broker publishes when the client vanishes without a DISCONNECT.
public struct MQTTWill: Sendable {
    /// Will topic, e.g. `ocellus/<node>/availability`.
    public var topic: String
    /// Will payload, e.g. `offline`.
    public var payload: [UInt8]
    /// Will QoS (0...2).
    public var qos: Int
    /// Whether the broker retains the will message.
    public var retain: Bool

    /// A will with a UTF-8 payload.
    public init(topic: String, payload: String, qos: Int = 1, retain: Bool = true) {
        self.topic = topic
        self.payload = Array(payload.utf8)
        self.qos = qos
        self.retain = retain
    }
}

/// TLS files for the broker connection (PEM paths). `caFile` is required; cert and key only for mTLS.
public struct MQTTTLSFiles: Sendable {
    /// CA certificate(s) that signed the broker's certificate.
    public var caFile: String
    /// Client certificate for mutual TLS.
    public var certFile: String?
    /// Client private key for mutual TLS.
    public var keyFile: String?

    /// TLS configuration from file paths.
    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// Running totals, read with `MQTTClient.counters`.
public struct MQTTCounters: Sendable, Equatable {
    /// Messages handed to libmosquitto.
    public var sent = 0
    /// Messages libmosquitto confirmed (on_publish).
    public var confirmed = 0
    /// Messages dropped from a full outbox (oldest first).
    public var dropped = 0
    /// QoS 0 messages libmosquitto accepted but lost when the connection broke.
    public var lostQoS0 = 0
    /// Successful connects (the first one included).
    public var connects = 0
    /// Connection losses and refusals.
    public var disconnects = 0
    /// Messages received on subscriptions.
    public var received = 0
    /// Messages waiting in the outbox now.
    public var queued = 0
    /// Messages inside libmosquitto not yet confirmed now.
    public var inFlight = 0
}

/// Errors thrown at the edges of the client (bad options, libmosquitto refusing a call).
public enum MQTTError: Error, CustomStringConvertible {
    /// libmosquitto returned an error code from the named call.
    case mosquitto(call: String, code: Int32)
    /// An argument the caller gave is invalid.
    case invalidArgument(String)
    /// The client was used after `disconnect()`.
    case closed

    /// A readable message naming the call and libmosquitto's explanation.
    public var description: String {
        switch self {
        case let .mosquitto(call, code):
            return "\(call) failed: \(String(cString: mosquitto_strerror(code))) (\(code))"
        case let .invalidArgument(what): return "invalid MQTT argument: \(what)"
        case .closed: return "MQTT client already disconnected"
        }
    }
}

// MARK: - Library initialisation

/// `mosquitto_lib_init` is not thread-safe; Swift's lazy global initialisation runs it exactly once.
private let mosquittoLibrary: Int32 = mosquitto_lib_init()

// MARK: - Client

/// A thread-safe MQTT client over libmosquitto with a bounded outbox and automatic reconnect.
///
/// Usage: create, set handlers, `connect()`, `publish`/`subscribe` from any thread, `disconnect()`.
/// The network thread keeps the client alive until `disconnect()`, which also drops the handlers.
/// `onConnect` runs after EVERY successful (re)connect, so availability and retained state can be
/// republished (a broker restarted without persistence forgets them).
public final class MQTTClient: @unchecked Sendable {
    // MARK: Configuration

    /// Client identifier sent in CONNECT.
    public let clientID: String
    /// Broker host name or address.
    public let host: String
    /// Broker port.
    public let port: Int
    /// Keepalive in seconds.
    public let keepalive: Int
    /// Outbox capacity in messages.
    public let outboxCapacity: Int
    /// Most of our messages that may sit unconfirmed inside libmosquitto.
    public let maxInFlight: Int

    private let mosq: OpaquePointer
    private let logger: Logger
    private let preferV5: Bool
    /// Whether a broker that refuses MQTT 5 gets 3.1.1 (false: MQTT 5 only, keep retrying it).
    private let allowV311Fallback: Bool
    private let io = DispatchQueue(label: "ocellus.mqtt.io")
    private let handlers = DispatchQueue(label: "ocellus.mqtt.handlers")
    private static let handlerKey = DispatchSpecificKey<Bool>()

    // MARK: State (guarded by `cond`)

    private struct Pending {
        var topic: String
        var payload: [UInt8]
        var qos: Int32
        var retain: Bool
        var messageExpiry: UInt32?
        var contentType: String?
    }

    private struct Subscription {
        var filter: String
        var qos: Int32
        var handler: @Sendable (MQTTMessage) -> Void
    }

    private let cond = NSCondition()
    private var _state: MQTTConnectionState = .idle
    private var protocolInUse: MQTTProtocolVersion
    private var outbox: [Pending?]          // ring buffer of `outboxCapacity` slots
    private var outHead = 0
    private var outCount = 0
    private var inFlightQoS: [Int32: Int32] = [:]   // mid -> qos, handed to libmosquitto, unconfirmed
    private var earlyConfirms: Set<Int32> = []      // on_publish seen before publish() returned the mid
    private var _counters = MQTTCounters()
    private var subscriptions: [Subscription] = []
    private var _onConnect: (@Sendable (MQTTProtocolVersion) -> Void)?
    private var _onDisconnect: (@Sendable (Int32) -> Void)?
    private var pumpScheduled = false
    private var backoffAttempt = 0
    private var connectionEpoch = 0                 // bumped on every connection loss
    private var sending = 0                         // popped from the outbox, publish call not done
    private let networkDone = DispatchSemaphore(value: 0)

    // MARK: Init

    /// Creates a client; nothing touches the network until `connect()`.
    /// - Parameters:
    ///   - password: the secret itself (read by the caller from a file or a systemd credential); never logged.
    ///   - preferV5: try MQTT 5 first; when the broker refuses it, use 3.1.1 from then on
    ///     (unless `allowV311Fallback` is false: then MQTT 5 only, refusals logged and retried).
    ///   - outboxCapacity: messages kept while offline; the oldest is dropped beyond it.
    ///   - maxInFlight: messages handed to libmosquitto and not yet confirmed (also its send maximum).
    public init(clientID: String, host: String, port: Int = 1883, keepalive: Int = 30,
                username: String? = nil, password: String? = nil, tls: MQTTTLSFiles? = nil,
                will: MQTTWill? = nil, preferV5: Bool = true, allowV311Fallback: Bool = true,
                outboxCapacity: Int = 1000, maxInFlight: Int = 20,
                logger: Logger = Logger(label: "ocellus.mqtt")) throws {
        guard mosquittoLibrary == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError.mosquitto(call: "mosquitto_lib_init", code: mosquittoLibrary)
        }
        guard outboxCapacity > 0 else { throw MQTTError.invalidArgument("outboxCapacity must be > 0") }
        guard (1...65535).contains(maxInFlight) else { throw MQTTError.invalidArgument("maxInFlight must be 1...65535") }
        guard (1...65535).contains(port) else { throw MQTTError.invalidArgument("port \(port) out of range") }
        guard keepalive >= 5 else { throw MQTTError.invalidArgument("keepalive must be >= 5 s") }
        guard let m = mosquitto_new(clientID, true, nil) else {
            throw MQTTError.mosquitto(call: "mosquitto_new", code: MOSQ_ERR_NOMEM.rawValue)
        }
        self.mosq = m
        self.clientID = clientID
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.outboxCapacity = outboxCapacity
        self.maxInFlight = maxInFlight
        self.preferV5 = preferV5
        self.allowV311Fallback = allowV311Fallback
        self.protocolInUse = preferV5 ? .v5 : .v311
        self.logger = logger
        self.outbox = Array(repeating: nil, count: outboxCapacity)
        handlers.setSpecific(key: Self.handlerKey, value: true)

        do {
            // We drive mosquitto_loop from our own thread (see `runNetwork`).
            try check("mosquitto_threaded_set", mosquitto_threaded_set(m, true))
            try check("MOSQ_OPT_PROTOCOL_VERSION",
                      mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, preferV5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311))
            try check("MOSQ_OPT_SEND_MAXIMUM", mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, Int32(maxInFlight)))
            if let username {
                try check("mosquitto_username_pw_set", mosquitto_username_pw_set(m, username, password))
            }
            if let tls {
                try check("mosquitto_tls_set", mosquitto_tls_set(m, tls.caFile, nil, tls.certFile, tls.keyFile, nil))
            }
            if let will {
                guard (0...2).contains(will.qos) else { throw MQTTError.invalidArgument("will qos \(will.qos)") }
                let rc = will.payload.withUnsafeBytes { raw in
                    mosquitto_will_set(m, will.topic, Int32(raw.count), raw.baseAddress, Int32(will.qos), will.retain)
                }
                try check("mosquitto_will_set", rc)
            }
        } catch {
            // Every stored property is set, so deinit runs and destroys `m` (destroying it here
            // too was a double free).
            throw error
        }
        mosquitto_connect_v5_callback_set(m, mqttOnConnect)
        mosquitto_disconnect_v5_callback_set(m, mqttOnDisconnect)
        mosquitto_publish_v5_callback_set(m, mqttOnPublish)
        mosquitto_message_v5_callback_set(m, mqttOnMessage)
    }

    deinit {
        // connect() retains self until disconnect(), so the loop thread is gone by now.
        mosquitto_destroy(mosq)
    }

    /// Skips the check that the broker's certificate names the host (`broker.tls.insecure`): the
    /// connection is still encrypted, but a man in the middle with any certificate from the CA is
    /// accepted. Call before `connect()`.
    public func setTLSInsecure(_ insecure: Bool) throws {
        try check("mosquitto_tls_insecure_set", mosquitto_tls_insecure_set(mosq, insecure))
    }

    // MARK: Handlers and state

    /// Called (on the client's handler queue) after every successful connect and reconnect.
    public func setOnConnect(_ handler: (@Sendable (MQTTProtocolVersion) -> Void)?) {
        cond.lock(); _onConnect = handler; cond.unlock()
    }

    /// Called (on the client's handler queue) when a connection is lost or refused; the argument is
    /// libmosquitto's reason code (0 only for our own `disconnect()`).
    public func setOnDisconnect(_ handler: (@Sendable (Int32) -> Void)?) {
        cond.lock(); _onDisconnect = handler; cond.unlock()
    }

    /// The current connection state.
    public var state: MQTTConnectionState {
        cond.lock(); defer { cond.unlock() }
        return _state
    }

    /// A snapshot of the counters.
    public var counters: MQTTCounters {
        cond.lock(); defer { cond.unlock() }
        var c = _counters
        c.queued = outCount
        c.inFlight = inFlightQoS.count
        return c
    }

    // MARK: Connect / disconnect

    /// Starts connecting in the background and returns at once. The client's network thread keeps
    /// reconnecting while the broker is unreachable, waiting 1, 2, 4, 8, 16, then 30 s between attempts
    /// (reset after each successful connect). Throws only when called twice or after `disconnect()`.
    public func connect() async throws {
        try startConnecting()
    }

    /// `connect()` for synchronous callers (the daemon's control thread): the same, without `await`.
    public func startConnecting() throws {
        cond.lock()
        guard _state == .idle else { cond.unlock(); throw MQTTError.invalidArgument("connect() called twice") }
        _state = .connecting
        cond.unlock()
        // Unretained is enough: callbacks run only on the network thread, which holds `self`.
        mosquitto_user_data_set(mosq, Unmanaged.passUnretained(self).toOpaque())
        logger.info("mqtt connecting", metadata: ["host": "\(host)", "port": "\(port)", "client_id": "\(clientID)"])
        let t = Thread { self.runNetwork() }
        t.name = "ocellus.mqtt.net"
        t.start()
    }

    /// Delay before reconnect attempt `n` (0-based): 1, 2, 4, 8, 16, 30, 30, ... seconds.
    static func backoffDelay(attempt n: Int) -> Double {
        n >= 5 ? 30 : Double(1 << n)
    }

    /// The network thread: connect, run `mosquitto_loop`, and on any failure (refused, lost, DNS,
    /// TLS or protocol error) back off and reconnect, until `disconnect()`.
    ///
    /// Why not `mosquitto_loop_start` + `mosquitto_reconnect_delay_set`: with libmosquitto 2.0.11
    /// (measured here) its thread never connected when the first `connect_async` failed at once
    /// (broker down on loopback: the thread waits while the state is still "new"), and it stopped
    /// for good after a 3.1.1-only broker refused MQTT 5 (a fatal protocol error ends
    /// `loop_forever`). Its backoff is also an uninterruptible nanosleep (source), which would hold
    /// `disconnect()` for up to 30 s.
    private func runNetwork() {
        var rc = mosquitto_connect(mosq, host, Int32(port), Int32(keepalive))
        while true {
            if isClosed { break }
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                // Wakes early on publish/disconnect (libmosquitto's socket pair); keepalive inside.
                rc = mosquitto_loop(mosq, Int32(keepalive * 1000), 1)
                if rc == MOSQ_ERR_SUCCESS.rawValue { continue }
            }
            if isClosed { break }
            cond.lock()
            let attempt = backoffAttempt
            backoffAttempt += 1
            cond.unlock()
            let delay = Self.backoffDelay(attempt: attempt)
            logger.warning("mqtt not connected, retrying", metadata: [
                "error": "\(String(cString: mosquitto_strerror(rc)))", "retry_in_s": "\(delay)"])
            let deadline = Date().addingTimeInterval(delay)
            cond.lock()
            while _state != .closed, cond.wait(until: deadline) {}
            cond.unlock()
            if isClosed { break }
            rc = mosquitto_reconnect(mosq)
        }
        networkDone.signal()
    }

    private var isClosed: Bool {
        cond.lock(); defer { cond.unlock() }
        return _state == .closed
    }

    /// Waits up to `timeout` for the outbox to drain and libmosquitto to confirm what it holds
    /// (a broker that is down costs the whole timeout), then sends DISCONNECT and stops the network
    /// thread. Publish `offline` before calling this; it is not lost if the broker is reachable.
    /// Do not call it from a handler (it waits for the handler queue).
    public func disconnect(timeout: TimeInterval = 5) {
        precondition(DispatchQueue.getSpecific(key: Self.handlerKey) == nil,
                     "MQTTClient.disconnect() called from one of its handlers (it would wait for itself)")
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        if _state == .idle || _state == .closed { _state = .closed; cond.unlock(); return }
        while outCount > 0 || sending > 0 || !inFlightQoS.isEmpty {
            if !cond.wait(until: deadline) { break }
        }
        let left = outCount + sending + inFlightQoS.count
        _state = .closed
        cond.broadcast()
        cond.unlock()
        if left > 0 { logger.warning("mqtt disconnect with undelivered messages", metadata: ["count": "\(left)"]) }
        io.sync {}   // no publish call is half-way through
        mosquitto_disconnect(mosq)
        // The thread leaves mosquitto_loop once DISCONNECT is written (or at once if not connected);
        // a blocking reconnect to an unreachable host can hold it longer, then it exits on its own.
        if networkDone.wait(timeout: .now() + max(1, deadline.timeIntervalSinceNow)) == .timedOut {
            logger.warning("mqtt network thread still busy after disconnect")
        }
        handlers.sync {}
        // Break the cycles handlers usually form by capturing the client.
        cond.lock()
        _onConnect = nil
        _onDisconnect = nil
        subscriptions = []
        cond.unlock()
    }

    // MARK: Publish / subscribe

    /// Queues a message and returns immediately (never blocks on the network).
    /// - Parameters:
    ///   - messageExpiry: MQTT 5 message expiry interval in seconds; ignored on 3.1.1.
    ///   - contentType: MQTT 5 content type (e.g. `application/json`); ignored on 3.1.1.
    public func publish(topic: String, payload: [UInt8], qos: Int = 0, retain: Bool = false,
                        messageExpiry: UInt32? = nil, contentType: String? = nil) throws {
        guard (0...2).contains(qos) else { throw MQTTError.invalidArgument("qos \(qos)") }
        guard !topic.isEmpty, !topic.contains("+"), !topic.contains("#") else {
            throw MQTTError.invalidArgument("publish topic '\(topic)'")
        }
        let msg = Pending(topic: topic, payload: payload, qos: Int32(qos), retain: retain,
                          messageExpiry: messageExpiry, contentType: contentType)
        cond.lock()
        guard _state != .closed else { cond.unlock(); throw MQTTError.closed }
        if outCount == outboxCapacity {
            outbox[outHead] = nil
            outHead = (outHead + 1) % outboxCapacity
            outCount -= 1
            _counters.dropped += 1
        }
        outbox[(outHead + outCount) % outboxCapacity] = msg
        outCount += 1
        let schedule = scheduleLocked()
        cond.unlock()
        if schedule { io.async { self.pump() } }
    }

    /// Queues a message with a UTF-8 payload; see `publish(topic:payload:...)`.
    public func publish(topic: String, string: String, qos: Int = 0, retain: Bool = false,
                        messageExpiry: UInt32? = nil, contentType: String? = nil) throws {
        try publish(topic: topic, payload: Array(string.utf8), qos: qos, retain: retain,
                    messageExpiry: messageExpiry, contentType: contentType)
    }

    /// Subscribes to a topic filter now (if connected) and again after every reconnect.
    /// The handler runs on the client's handler queue for every matching message.
    public func subscribe(_ filter: String, qos: Int = 0, handler: @escaping @Sendable (MQTTMessage) -> Void) throws {
        guard (0...2).contains(qos) else { throw MQTTError.invalidArgument("qos \(qos)") }
        var ok = false
        guard mosquitto_sub_topic_check(filter) == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError.invalidArgument("subscription filter '\(filter)'")
        }
        cond.lock()
        guard _state != .closed else { cond.unlock(); throw MQTTError.closed }
        subscriptions.append(Subscription(filter: filter, qos: Int32(qos), handler: handler))
        if case .connected = _state { ok = true }
        cond.unlock()
        if ok {
            io.async { _ = mosquitto_subscribe(self.mosq, nil, filter, Int32(qos)) }
        }
    }

    // MARK: Outbox pump (runs on `io` only)

    /// True when a pump should be scheduled now; marks it scheduled. Caller holds `cond`.
    private func scheduleLocked() -> Bool {
        guard case .connected = _state, outCount > 0, inFlightQoS.count < maxInFlight, !pumpScheduled else { return false }
        pumpScheduled = true
        return true
    }

    /// Hands outbox messages to libmosquitto while connected and under the in-flight limit.
    private func pump() {
        while true {
            cond.lock()
            guard case .connected(let version) = _state, outCount > 0, inFlightQoS.count < maxInFlight else {
                pumpScheduled = false
                cond.unlock()
                return
            }
            let msg = outbox[outHead]!
            outbox[outHead] = nil
            outHead = (outHead + 1) % outboxCapacity
            outCount -= 1
            let epoch = connectionEpoch
            sending += 1
            cond.unlock()

            var mid: Int32 = 0
            let rc = send(msg, v5: version == .v5, mid: &mid)

            cond.lock()
            sending -= 1
            cond.broadcast()   // waiters re-check after we unlock below
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                _counters.sent += 1
                if earlyConfirms.remove(mid) != nil {
                    // Confirmed before we got here.
                } else if msg.qos == 0 && epoch != connectionEpoch {
                    _counters.lostQoS0 += 1   // the socket broke between the call and now
                } else {
                    inFlightQoS[mid] = msg.qos
                }
                cond.unlock()
            } else if rc == MOSQ_ERR_NO_CONN.rawValue {
                // The socket went away before on_disconnect reached us: back to the front.
                if outCount == outboxCapacity {
                    _counters.dropped += 1   // the newest is kept; this one is the oldest
                } else {
                    outHead = (outHead - 1 + outboxCapacity) % outboxCapacity
                    outbox[outHead] = msg
                    outCount += 1
                }
                if case .connected = _state { _state = .connecting }
                pumpScheduled = false
                cond.unlock()
                return
            } else {
                // Refused for good (payload too large, bad topic for the broker): drop and count.
                _counters.dropped += 1
                cond.unlock()
                logger.error("mqtt publish refused", metadata: ["topic": "\(msg.topic)", "error": "\(String(cString: mosquitto_strerror(rc)))"])
            }
        }
    }

    /// One `mosquitto_publish(_v5)` call; v5 properties only on a v5 connection.
    private func send(_ msg: Pending, v5: Bool, mid: inout Int32) -> Int32 {
        msg.payload.withUnsafeBytes { raw in
            guard v5, msg.messageExpiry != nil || msg.contentType != nil else {
                return mosquitto_publish(mosq, &mid, msg.topic, Int32(raw.count), raw.baseAddress, msg.qos, msg.retain)
            }
            var props: OpaquePointer? = nil
            defer { mosquitto_property_free_all(&props) }
            if let e = msg.messageExpiry {
                _ = mosquitto_property_add_int32(&props, ocl_mqtt_prop_message_expiry, e)
            }
            if let c = msg.contentType {
                _ = mosquitto_property_add_string(&props, ocl_mqtt_prop_content_type, c)
            }
            return mosquitto_publish_v5(mosq, &mid, msg.topic, Int32(raw.count), raw.baseAddress, msg.qos, msg.retain, props)
        }
    }

    // MARK: Callback bodies (libmosquitto's thread)

    fileprivate func handleConnect(rc: Int32) {
        cond.lock()
        if _state == .closed { cond.unlock(); return }
        if rc != 0 {
            // libmosquitto follows a refused CONNACK with on_disconnect, which counts it.
            let refusedV5 = protocolInUse == .v5 &&
                (rc == ocl_mqtt_rc_unsupported_protocol_version || rc == ocl_connack_refused_protocol_version)
            let fallBack = refusedV5 && allowV311Fallback
            if fallBack { protocolInUse = .v311 }
            cond.unlock()
            if refusedV5 && !fallBack {
                logger.error("mqtt broker refused MQTT 5 and only MQTT 5 is allowed (broker.protocol: 5); retrying")
            } else if fallBack {
                // Takes effect on libmosquitto's next reconnect attempt (this thread makes it).
                _ = mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311)
                logger.notice("mqtt broker refused MQTT 5, falling back to 3.1.1")
            } else {
                logger.warning("mqtt connection refused", metadata: ["reason": "\(String(cString: mosquitto_reason_string(rc)))"])
            }
            return
        }
        let version = protocolInUse
        _state = .connected(version)
        _counters.connects += 1
        backoffAttempt = 0
        let subs = subscriptions.map { ($0.filter, $0.qos) }
        let handler = _onConnect
        cond.broadcast()
        cond.unlock()
        logger.info("mqtt connected", metadata: ["protocol": "\(version)"])
        // Subscriptions first, then whatever waited in the outbox, then the user's republish
        // (appended to the outbox after the older messages, so fresh retained state lands last).
        io.async {
            for (filter, qos) in subs { _ = mosquitto_subscribe(self.mosq, nil, filter, qos) }
            self.cond.lock()
            let go = self.scheduleLocked()
            self.cond.unlock()
            if go { self.pump() }
        }
        if let handler { handlers.async { handler(version) } }
    }

    fileprivate func handleDisconnect(rc: Int32) {
        cond.lock()
        let closing = _state == .closed
        if !closing { _state = .connecting }
        _counters.disconnects += 1
        connectionEpoch += 1
        // QoS 0 packets not yet written are gone with the socket; QoS 1/2 stay and are resent.
        let lost = inFlightQoS.filter { $0.value == 0 }
        for (mid, _) in lost { inFlightQoS[mid] = nil }
        _counters.lostQoS0 += lost.count
        let handler = _onDisconnect
        cond.broadcast()
        cond.unlock()
        if !closing {
            logger.warning("mqtt disconnected", metadata: ["reason": "\(String(cString: mosquitto_strerror(rc)))"])
        }
        if let handler { handlers.async { handler(rc) } }
    }

    fileprivate func handlePublish(mid: Int32) {
        cond.lock()
        if inFlightQoS.removeValue(forKey: mid) == nil { earlyConfirms.insert(mid) }
        _counters.confirmed += 1
        let go = scheduleLocked()
        cond.broadcast()
        cond.unlock()
        if go { io.async { self.pump() } }
    }

    fileprivate func handleMessage(_ m: UnsafePointer<mosquitto_message>, props: OpaquePointer?) {
        let topic = String(cString: m.pointee.topic)
        let count = Int(m.pointee.payloadlen)
        let payload: [UInt8] = count > 0 && m.pointee.payload != nil
            ? Array(UnsafeRawBufferPointer(start: m.pointee.payload, count: count)) : []
        var expiry: UInt32? = nil
        var contentType: String? = nil
        if let props {
            var v: UInt32 = 0
            if mosquitto_property_read_int32(props, ocl_mqtt_prop_message_expiry, &v, false) != nil { expiry = v }
            var s: UnsafeMutablePointer<CChar>? = nil
            if mosquitto_property_read_string(props, ocl_mqtt_prop_content_type, &s, false) != nil, let s {
                contentType = String(cString: s)
                free(s)
            }
        }
        let message = MQTTMessage(topic: topic, payload: payload, qos: Int(m.pointee.qos), retain: m.pointee.retain,
                                  messageExpiry: expiry, contentType: contentType)
        cond.lock()
        _counters.received += 1
        var found: [@Sendable (MQTTMessage) -> Void] = []
        for sub in subscriptions {
            var hit = false
            if mosquitto_topic_matches_sub(sub.filter, topic, &hit) == MOSQ_ERR_SUCCESS.rawValue, hit { found.append(sub.handler) }
        }
        cond.unlock()
        let matched = found
        if !matched.isEmpty { handlers.async { for h in matched { h(message) } } }
    }

    private func check(_ call: String, _ rc: Int32) throws {
        if rc != MOSQ_ERR_SUCCESS.rawValue { throw MQTTError.mosquitto(call: call, code: rc) }
    }
}

// MARK: - C callbacks

// libmosquitto's callbacks as top-level C functions (no captures; a closure called from
// libmosquitto's thread crashed under Swift 6 here); `self` arrives through the userdata pointer.

private func mqttClient(_ obj: UnsafeMutableRawPointer?) -> MQTTClient? {
    guard let obj else { return nil }
    return Unmanaged<MQTTClient>.fromOpaque(obj).takeUnretainedValue()
}

private func mqttOnConnect(_ m: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ flags: Int32, _ props: OpaquePointer?) {
    mqttClient(obj)?.handleConnect(rc: rc)
}

private func mqttOnDisconnect(_ m: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ rc: Int32, _ props: OpaquePointer?) {
    mqttClient(obj)?.handleDisconnect(rc: rc)
}

private func mqttOnPublish(_ m: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ mid: Int32, _ rc: Int32, _ props: OpaquePointer?) {
    mqttClient(obj)?.handlePublish(mid: mid)
}

private func mqttOnMessage(_ m: OpaquePointer?, _ obj: UnsafeMutableRawPointer?, _ msg: UnsafePointer<mosquitto_message>?, _ props: OpaquePointer?) {
    guard let msg else { return }
    mqttClient(obj)?.handleMessage(msg, props: props)
}
