// Tests of Florence2Task prompts against transformers 5.23.0 `Florence2Processor` goldens
// (Fixtures/text/small_tasks_goldens.json) and of the location bins against the rule written out.
import Foundation
import XCTest
@testable import Florence2

final class TasksTests: XCTestCase {
    /// Every task's prompt and encoder ids equal the processor's (its input_ids after the 577
    /// `<image>` ids).
    func testPromptsAndEncoderIdsMatchTransformers() throws {
      for name in TextFixtures.names {
        let tok = try TextFixtures.tokenizer(name)
        let cases = try TextFixtures.json("\(name)_tasks_goldens.json") as! [[String: Any]]
        var seen = Set<Florence2Task>()
        for c in cases {
            let task = try Florence2Task(token: c["task"] as! String)
            seen.insert(task)
            let prompt = try task.prompt(text: c["input"] as? String)
            XCTAssertEqual(prompt, c["prompt"] as? String, task.token)
            XCTAssertEqual(tok.encoderInputIds(prompt: prompt), TextFixtures.ids(c["encoder_ids"]), task.token)
            let raw = task.token + ((c["input"] as? String) ?? "")
            XCTAssertEqual(try Florence2Task.parse(raw).prompt, prompt, raw)
        }
        XCTAssertEqual(seen, Set(Florence2Task.allCases))
      }
    }

    func testExpansionsAndKinds() throws {
        XCTAssertEqual(Florence2Task.allCases.count, 15)
        XCTAssertEqual(try Florence2Task.caption.prompt(), "What does the image describe?")
        XCTAssertEqual(try Florence2Task.caption.prompt(text: "  \n"), "What does the image describe?")
        XCTAssertEqual(try Florence2Task.openVocabularyDetection.prompt(text: "\u{1c} a car\t"), "Locate a car in the image.")
        XCTAssertEqual(try Florence2Task.regionToOCR.prompt(text: "<loc_1><loc_2><loc_3><loc_999>"),
                       "What text is in the region <loc_1><loc_2><loc_3><loc_999>?")
        XCTAssertEqual(Florence2Task.allCases.filter { $0.input == .none }.count, 8)
        XCTAssertEqual(Florence2Task.allCases.filter { $0.input == .text }.map(\.token),
                       ["<CAPTION_TO_PHRASE_GROUNDING>", "<REFERRING_EXPRESSION_SEGMENTATION>", "<OPEN_VOCABULARY_DETECTION>"])
        XCTAssertEqual(Florence2Task.ocrWithRegion.resultKind, .ocr)
        XCTAssertEqual(Florence2Task.regionProposal.resultKind, .bboxes)
        XCTAssertEqual(Florence2Task.regionToCategory.resultKind, .pureText)
        XCTAssertEqual(Florence2Task.openVocabularyDetection.resultKind, .descriptionWithBBoxesOrPolygons)
    }

    func testErrorsNameTheTask() throws {
        XCTAssertThrowsError(try Florence2Task(token: "<DETECT>")) { XCTAssertEqual($0 as? Florence2TaskError, .unknownTask("<DETECT>")) }
        XCTAssertThrowsError(try Florence2Task.parse("describe")) { XCTAssertEqual($0 as? Florence2TaskError, .unknownTask("describe")) }
        XCTAssertThrowsError(try Florence2Task.objectDetection.prompt(text: "cars")) {
            XCTAssertEqual($0 as? Florence2TaskError, .unexpectedInput(task: .objectDetection))
            XCTAssertTrue("\($0)".contains("<OD>"))
        }
        XCTAssertThrowsError(try Florence2Task.captionToPhraseGrounding.prompt()) {
            XCTAssertEqual($0 as? Florence2TaskError, .missingInput(task: .captionToPhraseGrounding))
        }
        XCTAssertThrowsError(try Florence2Task.regionToCategory.prompt(text: " ")) {
            XCTAssertEqual($0 as? Florence2TaskError, .missingInput(task: .regionToCategory))
        }
        for bad in ["<loc_1><loc_2><loc_3>", "<loc_1><loc_2><loc_3><loc_1000>", "a car", "<loc_1><loc_2><loc_3><loc_4>x"] {
            XCTAssertThrowsError(try Florence2Task.regionToSegmentation.prompt(text: bad)) {
                XCTAssertEqual($0 as? Florence2TaskError, .invalidRegion(task: .regionToSegmentation, text: bad))
            }
        }
        let box = PixelBox(xmin: 0, ymin: 0, xmax: 1, ymax: 1)
        XCTAssertThrowsError(try Florence2Task.openVocabularyDetection.prompt(region: box, imageWidth: 10, imageHeight: 10)) {
            XCTAssertEqual($0 as? Florence2TaskError, .notARegionTask(task: .openVocabularyDetection))
        }
        XCTAssertThrowsError(try Florence2Task.caption.prompt(region: box, imageWidth: 10, imageHeight: 10)) {
            XCTAssertEqual($0 as? Florence2TaskError, .unexpectedInput(task: .caption))
        }
        XCTAssertThrowsError(try Florence2Task.parse("<OD>cars")) { XCTAssertEqual($0 as? Florence2TaskError, .unexpectedInput(task: .objectDetection)) }
    }

    /// Region prompts from pixel boxes: bin = clamp(floor(x / (W/1000)), 0, 999), per axis.
    func testRegionFromPixels() throws {
        let box = PixelBox(xmin: 33.6, ymin: 160.0, xmax: 640, ymax: -3)
        XCTAssertEqual(LocationBins.regionTokens(box, imageWidth: 640, imageHeight: 480), "<loc_52><loc_333><loc_999><loc_0>")
        XCTAssertEqual(try Florence2Task.regionToDescription.prompt(region: box, imageWidth: 640, imageHeight: 480),
                       "What does the region <loc_52><loc_333><loc_999><loc_0> describe?")
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let size = 1 + Int(rng.next() % 4000)
            let x = Double(rng.next() % 1_000_000) / 1_000_000 * Double(size)
            let b = LocationBins.quantize(x, size: size)
            let expected = max(0, min(999, Int((x / (Double(size) / 1000)).rounded(.down))))
            XCTAssertEqual(b, expected)
            // The centre of the bin quantizes back to the bin.
            XCTAssertEqual(LocationBins.quantize(LocationBins.dequantize(b, size: size), size: size), b)
        }
        XCTAssertEqual(LocationBins.dequantize(52, size: 640), 52.5 * 0.64, accuracy: 1e-12)
        XCTAssertEqual(LocationBins.dequantizeTruncated(52, size: 640), 33)
    }
}
