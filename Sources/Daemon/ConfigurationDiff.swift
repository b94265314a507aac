// What a reload (SIGHUP) has to do, from the old and new configurations (issue 5, Reload): a
// changed prompt, task or interval applies from the next frame; a changed camera source, size or
// fps reopens only that camera; a changed model loads the new one and swaps; a changed broker
// reconnects.

// MARK: - Diff

/// The work a reload has to do to go from one configuration to another.
public struct ConfigurationDiff: Sendable, Equatable {
    /// What happens to one camera.
    public enum CameraChange: String, Sendable, Equatable {
        /// New (and enabled): open it.
        case added
        /// Gone, or newly disabled: close it (a disabled camera's status becomes `disabled`).
        case removed
        /// Source, size or fps changed (or newly enabled): close and reopen it, with the new file's
        /// tasks.
        case reopen
        /// Only its tasks changed (token, text, interval, retain or name): the scheduler takes the
        /// new list from the next frame; the camera stays open.
        case tasks
    }

    /// Camera name and what to do, in the new file's order (removed cameras last, in the old order).
    public var cameras: [(name: String, change: CameraChange)]
    /// The `model` section changed: load the new model within the budget, then swap.
    public var reloadModel: Bool
    /// The broker connection must be rebuilt: `broker` changed, or `node_id` (the client id,
    /// topics and last will derive from it).
    public var reconnectBroker: Bool
    /// Home Assistant discovery must be republished (and the old one removed): `homeassistant`,
    /// `node_id`, `topic_prefix` or the set of cameras and tasks changed.
    public var republishDiscovery: Bool
    /// `health` changed: reschedule the health timer.
    public var health: Bool
    /// `outbox.capacity` changed: resize the outbox (the oldest messages go when it shrinks).
    public var outbox: Bool
    /// `log_level` changed.
    public var logLevel: Bool

    /// Nothing to do.
    public var isEmpty: Bool {
        cameras.isEmpty && !reloadModel && !reconnectBroker && !republishDiscovery && !health && !outbox && !logLevel
    }

    /// The change of camera `name`, if any.
    public func change(ofCamera name: String) -> CameraChange? { cameras.first { $0.name == name }?.change }

    /// One short line per action, for the log and `STATUS=`.
    public var summary: [String] {
        var out: [String] = []
        if reloadModel { out.append("reload model") }
        if reconnectBroker { out.append("reconnect broker") }
        for c in cameras { out.append("camera \(c.name): \(c.change.rawValue)") }
        if republishDiscovery { out.append("republish discovery") }
        if health { out.append("health interval") }
        if outbox { out.append("outbox capacity") }
        if logLevel { out.append("log level") }
        return out
    }

    /// The same actions for the same cameras in the same order.
    public static func == (l: ConfigurationDiff, r: ConfigurationDiff) -> Bool {
        l.cameras.elementsEqual(r.cameras, by: { $0.name == $1.name && $0.change == $1.change })
            && l.reloadModel == r.reloadModel && l.reconnectBroker == r.reconnectBroker
            && l.republishDiscovery == r.republishDiscovery && l.health == r.health && l.outbox == r.outbox
            && l.logLevel == r.logLevel
    }
}

extension DaemonConfiguration {
    /// Classifies every difference between `old` and `new` (warnings are ignored).
    public static func diff(_ old: DaemonConfiguration, _ new: DaemonConfiguration) -> ConfigurationDiff {
        var cameras: [(String, ConfigurationDiff.CameraChange)] = []
        for c in new.cameras {
            guard let o = old.camera(named: c.name) else {
                if c.enabled { cameras.append((c.name, .added)) }
                continue
            }
            switch (o.enabled, c.enabled) {
            case (false, false): continue
            case (true, false): cameras.append((c.name, .removed))
            case (false, true): cameras.append((c.name, .reopen))
            case (true, true):
                if o.source != c.source || o.size != c.size || o.fps != c.fps {
                    cameras.append((c.name, .reopen))
                } else if o.tasks != c.tasks {
                    cameras.append((c.name, .tasks))
                }
            }
        }
        for o in old.cameras where o.enabled && new.camera(named: o.name) == nil {
            cameras.append((o.name, .removed))
        }
        let reconnect = old.broker != new.broker || old.nodeId != new.nodeId
        let topology: (DaemonConfiguration) -> [String] = { cfg in
            cfg.cameras.flatMap { c in ["\(c.name)/\(c.enabled)"] + c.tasks.map { "\(c.name)/\($0.name)/\($0.task.token)" } }
        }
        let discovery = old.homeAssistant != new.homeAssistant || old.nodeId != new.nodeId
            || old.broker.topicPrefix != new.broker.topicPrefix || topology(old) != topology(new)
        return ConfigurationDiff(
            cameras: cameras.map { (name: $0.0, change: $0.1) },
            reloadModel: old.model != new.model,
            reconnectBroker: reconnect,
            republishDiscovery: discovery,
            health: old.health != new.health,
            outbox: old.outbox != new.outbox,
            logLevel: old.logLevel != new.logLevel)
    }
}
