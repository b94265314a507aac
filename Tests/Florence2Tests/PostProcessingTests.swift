// Tests of Florence2PostProcessor against transformers 5.23.0 `post_process_generation` goldens
// (Fixtures/text/small_postprocess_goldens.json): handcrafted decoder outputs for every task.
import Foundation
import XCTest
@testable import Florence2

final class PostProcessingTests: XCTestCase {
    private func goldens(_ name: String = "small") throws -> (banned: [String], cases: [[String: Any]]) {
        let o = try TextFixtures.json("\(name)_postprocess_goldens.json") as! [String: Any]
        return (o["banned_grounding_tokens"] as! [String], o["cases"] as! [[String: Any]])
    }

    /// Each case: the ids decode to the golden text, and the parsed answer equals transformers'
    /// (labels exactly; pixels as v5 truncates them, and as floats by the dequantize rule).
    func testMatchesTransformers() throws {
      for name in TextFixtures.names {
        let tok = try TextFixtures.tokenizer(name)
        let (_, cases) = try goldens(name)
        var tasks = Set<Florence2Task>()
        for (n, c) in cases.enumerated() {
            let task = try Florence2Task(token: c["task"] as! String)
            tasks.insert(task)
            let text = c["text"] as! String
            XCTAssertEqual(tok.decode(TextFixtures.ids(c["ids"]), skipSpecialTokens: false), text, "case \(n)")
            let size = c["image_size"] as! [Int]
            let r = Florence2PostProcessor.process(ids: TextFixtures.ids(c["ids"]), tokenizer: tok, task: task,
                                                   imageWidth: size[0], imageHeight: size[1])
            XCTAssertEqual(r.task, task)
            XCTAssertEqual([r.imageWidth, r.imageHeight], size)
            assertEqual(r, expected: c["expected"]!, "\(name) case \(n) \(task.token) \(text.debugDescription)")
        }
        XCTAssertEqual(Set(tasks.map(\.resultKind)).count, 7, "every parser kind has goldens")
      }
    }

    func testBannedPhrasesAreTheConversionScriptList() throws {
        XCTAssertEqual(Florence2PostProcessor.bannedGroundingPhrases, Set(try goldens("small").banned))
        XCTAssertEqual(Florence2PostProcessor.bannedGroundingPhrases, Set(try goldens("florence2").banned))
    }

    func testCodableRoundTrip() throws {
        for c in try goldens().cases {
            let task = try Florence2Task(token: c["task"] as! String)
            let size = c["image_size"] as! [Int]
            let r = Florence2PostProcessor.process(c["text"] as! String, task: task, imageWidth: size[0], imageHeight: size[1])
            let data = try JSONEncoder().encode(r)
            XCTAssertEqual(try JSONDecoder().decode(Florence2Result.self, from: data), r)
        }
        let r = Florence2PostProcessor.process("</s><s>car<loc_52><loc_333><loc_932><loc_774></s>", task: .objectDetection,
                                               imageWidth: 640, imageHeight: 480)
        let json = String(decoding: try JSONEncoder().encode(r.output), as: UTF8.self)
        XCTAssertTrue(json.contains("\"kind\":\"boxes\""), json)
        XCTAssertTrue(json.contains("\"label\":\"car\""), json)
    }

    func testPixelsAreBinCentres() {
        let r = Florence2PostProcessor.process("<s>car<loc_0><loc_999><loc_500><loc_1></s>", task: .objectDetection,
                                               imageWidth: 1920, imageHeight: 1080)
        guard case let .boxes(b) = r.output, b.count == 1 else { return XCTFail("\(r.output)") }
        XCTAssertEqual(b[0].box.bins, [0, 999, 500, 1])
        let expected = [0.5 * 1.92, 999.5 * 1.08, 500.5 * 1.92, 1.5 * 1.08]
        for (a, e) in zip(b[0].box.pixels, expected) { XCTAssertEqual(a, e, accuracy: 1e-9) }
        XCTAssertEqual(b[0].box.transformersPixels(imageWidth: 1920, imageHeight: 1080), [0, 1079, 960, 1])
    }

    // MARK: - Comparison with the golden dictionaries

    private func assertBoxes(_ boxes: [LabelledBox], _ exp: [String: Any], labelsKey: String, bboxesKey: String,
                             _ w: Int, _ h: Int, _ msg: String) {
        let eb = exp[bboxesKey] as! [[Int]], el = exp[labelsKey] as! [String]
        XCTAssertEqual(boxes.map(\.label), el, msg)
        XCTAssertEqual(boxes.map { $0.box.transformersPixels(imageWidth: w, imageHeight: h) }, eb, msg)
        for b in boxes { assertCentres(b.box, w, h, msg) }
    }

    private func assertPolygons(_ polys: [LabelledPolygons], _ exp: [String: Any], labelsKey: String, _ w: Int, _ h: Int, _ msg: String) {
        XCTAssertEqual(polys.map(\.label), exp[labelsKey] as! [String], msg)
        XCTAssertEqual(polys.map { $0.polygons.map { $0.transformersPixels(imageWidth: w, imageHeight: h) } },
                       exp["polygons"] as! [[[Int]]], msg)
        for p in polys { for q in p.polygons { XCTAssertEqual(q.bins.count % 2, 0, msg); assertCentres(q, w, h, msg) } }
    }

    /// pixels[k] = (bins[k] + 0.5) · size/1000, x for even k and y for odd k.
    private func assertCentres(_ c: Florence2Coordinates, _ w: Int, _ h: Int, _ msg: String) {
        XCTAssertEqual(c.pixels.count, c.bins.count, msg)
        for (k, (b, p)) in zip(c.bins, c.pixels).enumerated() {
            XCTAssertEqual(p, (Double(b) + 0.5) * Double(k % 2 == 0 ? w : h) / 1000, accuracy: 1e-9, msg)
        }
    }

    private func assertEqual(_ r: Florence2Result, expected: Any, _ msg: String) {
        let w = r.imageWidth, h = r.imageHeight
        switch (r.task.resultKind, r.output) {
        case let (.pureText, .text(t)):
            XCTAssertEqual(t, expected as? String, msg)
        case let (.descriptionWithBBoxes, .boxes(b)), let (.bboxes, .boxes(b)), let (.phraseGrounding, .boxes(b)):
            assertBoxes(b, expected as! [String: Any], labelsKey: "labels", bboxesKey: "bboxes", w, h, msg)
        case let (.ocr, .ocr(lines)):
            let e = expected as! [String: Any]
            XCTAssertEqual(lines.map(\.text), e["labels"] as! [String], msg)
            XCTAssertEqual(lines.map { $0.quad.transformersPixels(imageWidth: w, imageHeight: h) }, e["quad_boxes"] as! [[Int]], msg)
            for l in lines { XCTAssertEqual(l.quad.bins.count, 8, msg); assertCentres(l.quad, w, h, msg) }
        case let (.polygons, .polygons(p)):
            assertPolygons(p, expected as! [String: Any], labelsKey: "labels", w, h, msg)
        case let (.descriptionWithBBoxesOrPolygons, .boxesOrPolygons(b, p)):
            let e = expected as! [String: Any]
            assertBoxes(b, e, labelsKey: "bboxes_labels", bboxesKey: "bboxes", w, h, msg)
            assertPolygons(p, e, labelsKey: "polygons_labels", w, h, msg)
        default:
            XCTFail("\(msg): output \(r.output) does not fit kind \(r.task.resultKind)")
        }
    }
}
