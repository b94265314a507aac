// The daemon's side of MQTT: one client with a last will, and the retained state (availability,
// node state, camera statuses, discovery, the latest caption of every camera and task, health)
// kept here and republished on every (re)connect, as Frigate and Zigbee2MQTT do: a broker restarted
// without persistence has forgotten it. Events (detections, grounding) go through the client's
// bounded outbox, which drops the oldest while the broker is away and counts what it drops.
import Foundation
import Logging
import MQTT

/// One retained message the daemon owns.
struct RetainedMessage: Sendable {
    var payload: [UInt8]
    var qos: Int
    var messageExpiry: UInt32?
    var contentType: String?
}

/// Publishes for one broker configuration. Thread-safe: cameras, the inference worker and the
/// control loop publish from their own threads; nothing here blocks on the network.
public final class Publisher: @unchecked Sendable {
    /// The topics of this node.
    public let topics: Topics
    /// The broker settings this publisher was built from.
    public let broker: BrokerConfiguration
    private let client: MQTTClient
    private let lock = NSLock()
    /// Retained state by topic, republished in insertion order on every connect.
    private var retained: [String: RetainedMessage] = [:]
    private var order: [String] = []
    /// Topics cleared (empty retained message) and not set since: cleared again on every connect,
    /// since a clear sent while the broker was away may have been dropped from the outbox.
    private var cleared: Set<String> = []
    private let logger: Logger

    /// A publisher for `configuration`'s broker (the password is read now, from its file or
    /// systemd credential). Nothing touches the network until `start()`.
    public init(configuration: DaemonConfiguration, logger: Logger,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let b = configuration.broker
        broker = b
        topics = Topics(prefix: b.topicPrefix, node: configuration.nodeId)
        self.logger = logger
        var tls: MQTTTLSFiles?
        if let t = b.tls {
            let key = try t.key.map { try $0.resolvedPath(environment: environment) }
            tls = MQTTTLSFiles(caFile: t.caFile ?? Publisher.systemCABundle, certFile: t.certFile, keyFile: key)
        }
        client = try MQTTClient(
            clientID: b.clientId, host: b.host, port: b.port, keepalive: b.keepalive,
            username: b.username, password: try b.readPassword(environment: environment), tls: tls,
            will: MQTTWill(topic: topics.availability, payload: "offline", qos: max(1, b.qos), retain: true),
            preferV5: b.protocolVersion != .v311, allowV311Fallback: b.protocolVersion == .auto, outboxCapacity: configuration.outbox.capacity,
            logger: logger)
        if let t = b.tls, t.insecure { try client.setTLSInsecure(true) }
        client.setOnConnect { [weak self] version in self?.connected(version) }
        client.setOnDisconnect { [weak self] code in
            guard code != 0 else { return }   // our own disconnect()
            self?.logger.warning("broker connection lost; reconnecting with backoff", metadata: [
                "broker": "\(b.host):\(b.port)", "reason_code": "\(code)"])
        }
    }

    /// Debian's CA bundle, used when TLS is on and `ca_file` is not given.
    static let systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

    /// Starts connecting in the background (never blocks on the broker).
    public func start() throws {
        try client.startConnecting()
        logger.info("connecting to the broker", metadata: [
            "broker": "\(broker.host):\(broker.port)", "client_id": "\(broker.clientId)",
            "tls": "\(broker.tls != nil)", "username": "\(broker.username ?? "none")"])
    }

    /// After every connect: `online`, then all retained state (in the order it was first set) and
    /// the clears. Queued under the lock, so a value set meanwhile by another thread goes after it.
    private func connected(_ version: MQTTProtocolVersion) {
        logger.info("connected to the broker", metadata: ["broker": "\(broker.host):\(broker.port)", "protocol": "\(version)"])
        lock.withLock {
            send(topics.availability, RetainedMessage(payload: Array("online".utf8), qos: max(1, broker.qos)), retain: true)
            for t in order { if let m = retained[t] { send(t, m, retain: true) } }
            for t in cleared.sorted() { send(t, RetainedMessage(payload: [], qos: broker.qos), retain: true) }
        }
    }

    private func send(_ topic: String, _ m: RetainedMessage, retain: Bool) {
        do {
            try client.publish(topic: topic, payload: m.payload, qos: m.qos, retain: retain,
                               messageExpiry: m.messageExpiry, contentType: m.contentType)
        } catch {
            logger.error("publish failed", metadata: ["topic": "\(topic)", "error": "\(error)"])
        }
    }

    /// Sets retained state: kept for republishing, and sent now when connected and changed (while
    /// offline the next connect sends it, so the outbox holds no stale copies of state).
    public func publishRetained(_ topic: String, _ payload: [UInt8], contentType: String? = nil, messageExpiry: UInt32? = nil) {
        let m = RetainedMessage(payload: payload, qos: broker.qos, messageExpiry: messageExpiry, contentType: contentType)
        lock.withLock {
            cleared.remove(topic)
            var changed = true
            if let old = retained.updateValue(m, forKey: topic) { changed = old.payload != payload } else { order.append(topic) }
            // The broker already holds an unchanged value (and a reconnect republishes it anyway).
            if changed, isConnected { send(topic, m, retain: true) }
        }
    }

    /// Removes retained state from the broker (an empty retained message) and from the republish set.
    public func clearRetained(_ topic: String) {
        lock.withLock {
            if retained.removeValue(forKey: topic) != nil { order.removeAll { $0 == topic } }
            cleared.insert(topic)
            if isConnected { send(topic, RetainedMessage(payload: [], qos: broker.qos), retain: true) }
        }
    }

    /// Publishes an event (not retained) through the bounded outbox.
    public func publishEvent(_ topic: String, _ payload: [UInt8], contentType: String? = nil) {
        send(topic, RetainedMessage(payload: payload, qos: broker.qos, contentType: contentType), retain: false)
    }

    /// Copies every retained message of `other` whose topic is under `other`'s node root to the
    /// same place under this node's root (a reconnect to another broker or node id keeps the state);
    /// what this publisher already holds is newer and kept.
    public func adoptRetained(from other: Publisher) {
        let oldRoot = other.topics.prefix + "/" + other.topics.node + "/"
        let newRoot = topics.prefix + "/" + topics.node + "/"
        let items: [(String, RetainedMessage)] = other.lock.withLock { other.order.compactMap { t in other.retained[t].map { (t, $0) } } }
        lock.withLock {
            for (t, m) in items where t.hasPrefix(oldRoot) {
                let nt = newRoot + t.dropFirst(oldRoot.count)
                if retained[nt] == nil, !cleared.contains(nt) { retained[nt] = m; order.append(nt) }
            }
        }
    }

    /// Whether the client is connected now.
    public var isConnected: Bool {
        if case .connected = client.state { return true }
        return false
    }

    /// The client's counters (dropped, queued, confirmed, connects, ...).
    public var counters: MQTTCounters { client.counters }

    /// Publishes `offline` (retained), waits up to `timeout` for the outbox to drain, then disconnects.
    public func stop(timeout: TimeInterval = 5) {
        send(topics.availability, RetainedMessage(payload: Array("offline".utf8), qos: max(1, broker.qos)), retain: true)
        client.disconnect(timeout: isConnected ? timeout : 0)
    }
}
