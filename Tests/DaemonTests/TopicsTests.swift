// Topic names, result payloads and Home Assistant discovery, as the README documents them.
import Foundation
import XCTest
@testable import Daemon
@testable import Florence2

final class TopicsTests: XCTestCase {
    let topics = Topics(prefix: "ocellus", node: "box1")

    func testTopicNames() {
        XCTAssertEqual(topics.availability, "ocellus/box1/availability")
        XCTAssertEqual(topics.state, "ocellus/box1/state")
        XCTAssertEqual(topics.health, "ocellus/box1/health")
        XCTAssertEqual(topics.cameraStatus("porch"), "ocellus/box1/porch/status")
        XCTAssertEqual(topics.result(camera: "porch", task: .moreDetailedCaption), "ocellus/box1/porch/more_detailed_caption")
        XCTAssertEqual(topics.result(camera: "porch", task: .objectDetection), "ocellus/box1/porch/od")
        XCTAssertTrue(Topics.retains(.caption))
        XCTAssertTrue(Topics.retains(.ocr))
        XCTAssertFalse(Topics.retains(.objectDetection))
        XCTAssertFalse(Topics.retains(.captionToPhraseGrounding))
    }

    func testDetectionPayloadHasPixelAndNormalizedBoxesAndNoScore() throws {
        let r = Florence2PostProcessor.process("</s><s>car<loc_100><loc_200><loc_500><loc_700></s>", task: .objectDetection,
                                               imageWidth: 1000, imageHeight: 500)
        let p = ResultPayload(result: r, camera: "porch", prompt: nil, frame: FramePayload(seq: 42, w: 1000, h: 500),
                              timestamp: 1_764_600_000.5, model: "florence2-base-int8.gguf", latency: 0.81234)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: p.json()) as? [String: Any])
        XCTAssertEqual(obj["task"] as? String, "<OD>")
        XCTAssertEqual(obj["camera"] as? String, "porch")
        XCTAssertEqual(obj["latency_s"] as? Double, 0.812)
        XCTAssertNil(obj["text"])
        let objects = try XCTUnwrap(obj["objects"] as? [[String: Any]])
        XCTAssertEqual(objects.count, 1)
        XCTAssertEqual(objects[0]["label"] as? String, "car")
        XCTAssertEqual(objects[0]["box"] as? [Double], [100.5, 100.25, 500.5, 350.25])
        let norm = try XCTUnwrap(objects[0]["box_norm"] as? [Double])
        for (a, b) in zip(norm, [0.1005, 0.2005, 0.5005, 0.7005]) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        XCTAssertNil(objects[0]["score"], "Florence-2 has no confidence: no score is invented")
        XCTAssertEqual((obj["frame"] as? [String: Any])?["seq"] as? Int, 42)
    }

    func testCaptionPayloadAndDiscovery() throws {
        let r = Florence2PostProcessor.process("</s><s>A dog on a porch.</s>", task: .caption, imageWidth: 640, imageHeight: 480)
        let p = ResultPayload(result: r, camera: "porch", prompt: nil, frame: FramePayload(seq: 1, w: 640, h: 480),
                              timestamp: 1, model: "m", latency: 1)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: p.json()) as? [String: Any])
        XCTAssertEqual(obj["text"] as? String, "A dog on a porch.")
        XCTAssertNil(obj["objects"])

        XCTAssertEqual(Discovery.topic(prefix: "homeassistant", node: "box1", camera: "porch"), "homeassistant/device/ocellus_box1_porch/config")
        let d = try Discovery.payload(topics: topics, camera: "porch", tasks: [("caption", .caption), ("od", .objectDetection)], version: "0.1")
        let disc = try XCTUnwrap(JSONSerialization.jsonObject(with: d) as? [String: Any])
        XCTAssertEqual((disc["o"] as? [String: Any])?["name"] as? String, "ocellus")
        XCTAssertEqual(disc["availability_mode"] as? String, "all")
        let cmps = try XCTUnwrap(disc["cmps"] as? [String: [String: Any]])
        XCTAssertEqual(cmps["caption"]?["p"] as? String, "sensor")
        XCTAssertEqual(cmps["caption"]?["state_topic"] as? String, "ocellus/box1/porch/caption")
        XCTAssertEqual(cmps["od"]?["p"] as? String, "event")
        XCTAssertEqual(cmps["od"]?["unique_id"] as? String, "ocellus_box1_porch_od")
    }
}
