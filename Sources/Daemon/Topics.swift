// MQTT topics and payloads of the daemon (README "Topics"): availability with a last will, the
// node state, per-camera status, one results topic per camera and task, health, and Home
// Assistant device-based discovery. Pure values: the daemon publishes them, tests check them.
import Florence2
import Foundation

// MARK: - Topics

/// Topic names under `<prefix>/<node>/`.
public struct Topics: Sendable, Equatable {
    /// The topic prefix (`ocellus`).
    public let prefix: String
    /// The node id (hostname slug).
    public let node: String

    /// Topics for `node` under `prefix`.
    public init(prefix: String, node: String) {
        self.prefix = prefix
        self.node = node
    }

    private var base: String { "\(prefix)/\(node)" }
    /// `online` / `offline`, retained; the last will sets `offline`.
    public var availability: String { base + "/availability" }
    /// Retained JSON: running, reloading, stopping, degraded, with the reason.
    public var state: String { base + "/state" }
    /// Health JSON on an interval (retained, with an expiry under MQTT 5).
    public var health: String { base + "/health" }
    /// A camera's `online` / `offline` / `disabled`, retained.
    public func cameraStatus(_ camera: String) -> String { "\(base)/\(camera)/status" }
    /// A camera's results for one task: `<prefix>/<node>/<camera>/<task name>` (the task's `name`
    /// key, by default its slug).
    public func result(camera: String, name: String) -> String { "\(base)/\(camera)/\(name)" }
    /// A camera's results for a task under its default name: `<prefix>/<node>/<camera>/<task slug>`.
    public func result(camera: String, task: Florence2Task) -> String { result(camera: camera, name: Topics.slug(task)) }

    /// A task token as a topic level: `<MORE_DETAILED_CAPTION>` → `more_detailed_caption`.
    public static func slug(_ task: Florence2Task) -> String {
        task.rawValue.trimmingCharacters(in: CharacterSet(charactersIn: "<>")).lowercased()
    }

    /// Whether results of `task` are retained: texts (captions, OCR, region descriptions) are
    /// the current state of a camera; detections and grounding are events.
    public static func retains(_ task: Florence2Task) -> Bool { TaskConfiguration.retainsByDefault(task) }
}

// MARK: - Payloads

/// The frame a result was computed from.
public struct FramePayload: Codable, Equatable, Sendable {
    /// The capture sequence number.
    public let seq: UInt64
    /// Width and height in pixels.
    public let w: Int, h: Int

    public init(seq: UInt64, w: Int, h: Int) { self.seq = seq; self.w = w; self.h = h }
}

/// One detected or grounded object: pixel box and box normalized to [0, 1]. Florence-2 gives no
/// confidence, so there is no score.
public struct ObjectPayload: Codable, Equatable, Sendable {
    public let label: String
    /// xmin, ymin, xmax, ymax in pixels of the frame.
    public let box: [Double]
    /// The same box divided by the frame's width and height.
    public let box_norm: [Double]
}

/// One text line with its quadrilateral (OCR with regions).
public struct TextLinePayload: Codable, Equatable, Sendable {
    public let text: String
    /// x1, y1, …, x4, y4 in pixels.
    public let quad: [Double]
}

/// One segmented instance: its label and polygons (x, y alternating, pixels).
public struct PolygonPayload: Codable, Equatable, Sendable {
    public let label: String
    public let polygons: [[Double]]
}

/// A result message: `<prefix>/<node>/<camera>/<task slug>`.
public struct ResultPayload: Codable, Equatable, Sendable {
    /// Seconds since 1970 when the frame was captured.
    public let ts: Double
    public let camera: String
    /// The task token.
    public let task: String
    /// The task's input text, if it takes one.
    public let prompt: String?
    /// The answer text (pure-text tasks), else nil.
    public let text: String?
    /// Labelled boxes (detection, dense captions, region proposals, grounding).
    public let objects: [ObjectPayload]?
    /// OCR lines with quadrilaterals.
    public let lines: [TextLinePayload]?
    /// Segmentation polygons.
    public let polygons: [PolygonPayload]?
    public let frame: FramePayload
    /// The model file's name.
    public let model: String
    /// Seconds from frame to result.
    public let latency_s: Double

    /// The payload of `result` for `camera`.
    public init(result: Florence2Result, camera: String, prompt: String?, frame: FramePayload, timestamp: Double,
                model: String, latency: Double) {
        ts = timestamp
        self.camera = camera
        task = result.task.rawValue
        self.prompt = prompt
        self.frame = frame
        self.model = model
        latency_s = (latency * 1000).rounded() / 1000
        let w = Double(max(1, result.imageWidth)), h = Double(max(1, result.imageHeight))
        func objects(_ boxes: [LabelledBox]) -> [ObjectPayload] {
            boxes.compactMap { b in
                let p = b.box.pixels
                guard p.count >= 4 else { return nil }
                return ObjectPayload(label: b.label, box: Array(p.prefix(4)), box_norm: [p[0] / w, p[1] / h, p[2] / w, p[3] / h])
            }
        }
        func polygons(_ ps: [LabelledPolygons]) -> [PolygonPayload] {
            ps.map { PolygonPayload(label: $0.label, polygons: $0.polygons.map(\.pixels)) }
        }
        switch result.output {
        case let .text(t):
            text = t; self.objects = nil; lines = nil; self.polygons = nil
        case let .boxes(b):
            text = nil; self.objects = objects(b); lines = nil; self.polygons = nil
        case let .ocr(l):
            text = nil; self.objects = nil; lines = l.map { TextLinePayload(text: $0.text, quad: $0.quad.pixels) }; self.polygons = nil
        case let .polygons(p):
            text = nil; self.objects = nil; lines = nil; self.polygons = polygons(p)
        case let .boxesOrPolygons(b, p):
            text = nil; self.objects = objects(b); lines = nil; self.polygons = polygons(p)
        }
    }

    /// The JSON bytes (keys sorted, so messages are stable).
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }
}

// MARK: - Home Assistant discovery

/// Home Assistant device-based discovery (`<discovery prefix>/device/<id>/config`): one device per
/// camera, with its status as availability (together with the node's), a sensor per text task
/// (the first 255 characters as state, the whole payload as attributes) and an event entity per
/// detection task.
public enum Discovery {
    /// The discovery topic of `camera` on `node`.
    public static func topic(prefix: String, node: String, camera: String) -> String {
        "\(prefix)/device/ocellus_\(node)_\(camera)/config"
    }

    /// The discovery JSON for `camera` with its `tasks` (`(name, task)`: the topic level and the
    /// Florence-2 task), components keyed by task name.
    public static func payload(topics: Topics, camera: String, tasks: [(name: String, task: Florence2Task)], version: String,
                               qos: Int = 1) throws -> Data {
        var cmps: [String: Any] = [:]
        for (slug, task) in tasks {
            let id = "ocellus_\(topics.node)_\(camera)_\(slug)"
            if Topics.retains(task) {
                cmps[slug] = [
                    "p": "sensor", "unique_id": id, "name": slug.replacingOccurrences(of: "_", with: " "),
                    "state_topic": topics.result(camera: camera, name: slug),
                    "value_template": "{{ value_json.text[:255] }}",
                    "json_attributes_topic": topics.result(camera: camera, name: slug),
                    "icon": "mdi:text-box-outline",
                ]
            } else {
                cmps[slug] = [
                    "p": "event", "unique_id": id, "name": slug.replacingOccurrences(of: "_", with: " "),
                    "state_topic": topics.result(camera: camera, name: slug),
                    "event_types": ["detected"],
                    "value_template": "{\"event_type\": \"detected\", \"objects\": {{ (value_json.objects or []) | length }}}",
                    "json_attributes_topic": topics.result(camera: camera, name: slug),
                ]
            }
        }
        let payload: [String: Any] = [
            "dev": ["ids": ["ocellus_\(topics.node)_\(camera)"], "name": "Ocellus \(topics.node) \(camera)",
                    "mf": "Ocellus", "mdl": "Florence-2 camera", "sw": version,
                    "via_device": "ocellus_\(topics.node)"],
            "o": ["name": "ocellus", "sw": version],
            "availability": [["topic": topics.availability], ["topic": topics.cameraStatus(camera)]],
            "availability_mode": "all",
            "qos": qos,
            "cmps": cmps,
        ]
        return try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
    }
}
