// Florence-2 in Swift against transformers 5.23.0 on the tiny seeded fixtures made by
// Quantization/make_fixtures.py: per-stage tensors, encoder output, teacher-forced logits, and the
// generated ids of greedy and 3-beam search.
import CMallocCounter
import Foundation
import XCTest
@testable import Compute
@testable import Florence2

/// A fixture's model file loaded for the tests: 2 threads, 32 prompt tokens, 40 new tokens, 3 beams.
func fixtureModel(_ name: String, precision: String = "fp32") throws -> Florence2Model {
    let path = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/\(name)/\(name)-\(precision).gguf").path
    let config = try Florence2Config(file: GGUFFile(path: path))
    var limits = Florence2Limits(config: config, threads: 2)
    limits.maxPromptTokens = 32
    limits.maxNewTokens = 40
    limits.numBeams = 3
    let file = try Florence2ModelFile(path: path, limits: limits, threads: 2, budgetBytes: nil)
    return try Florence2Model(file: file, pool: Florence2ParityTests.pool)
}

final class Florence2ParityTests: XCTestCase {
    struct Settings: Decodable {
        let num_beams: Int
        let no_repeat_ngram_size: Int
        let min_new_tokens: Int
        let max_new_tokens: Int
    }
    struct Generated: Decodable { let ids: [Int32]; let settings: Settings }
    struct Prompt: Decodable {
        let prompt_ids: [Int32]
        let generate: [String: Generated]
    }
    struct Ids: Decodable { let prompts: [String: Prompt]; let decoder_inputs: [Int32] }
    struct Size: Decodable { let height: Int; let width: Int }
    struct Manifest: Decodable { let image_size_processed: Size }

    static let pool = WorkerPool(threads: 2)

    private func fixture(_ name: String) throws -> URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/\(name)")
    }

    private func load(_ name: String, precision: String = "fp32") throws -> (Florence2Model, Ids, Manifest) {
        let dir = try fixture(name)
        let ids = try JSONDecoder().decode(Ids.self, from: Data(contentsOf: dir.appendingPathComponent("ids.json")))
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        return (try fixtureModel(name, precision: precision), ids, manifest)
    }

    /// Copies a golden `.npy` into a fresh arena tensor.
    private func tensor(_ a: NPYArray, arena: Arena) throws -> Tensor {
        let t = try arena.tensor(Shape(a.shape))
        t.copy(from: a.values)
        return t
    }

    private func checkFixture(_ name: String) throws {
        let (model, ids, _) = try load(name)
        let scratch = Arena(capacity: 8 << 20)
        let pixels = try tensor(Golden.npy("\(name)/pixel_values.npy"), arena: scratch)
        for (task, goldenName) in [("<OD>", "encoder_od"), ("<CAPTION>", "encoder_caption")] {
            guard let prompt = ids.prompts[task] else { return XCTFail("\(name): no \(task) in ids.json") }
            XCTAssertEqual(model.promptIds(try Florence2Task(token: task).prompt()), prompt.prompt_ids, "\(name) \(task) prompt ids")
            var seen: [String: [Float]] = [:]
            try model.encode(pixels: pixels, promptIds: prompt.prompt_ids) { key, t in seen[key] = t.toArray() }
            if task == "<OD>" {
                for s in 0..<4 {
                    Golden.assertClose(seen["conv\(s)"] ?? [], try Golden.npy("\(name)/conv\(s).npy").values, tolerance: 1e-4, "\(name) conv\(s)")
                    // 1e-4 absolute, except where the reference itself cannot resolve it: tiny-deep's
                    // stage 2 residual stream reaches |x| = 218 and transformers' fp32 output differs
                    // from its own float64 run by 2.3e-4 there (Quantization/fp32_resolution.py), so
                    // the bound is that floor plus our share, 3e-4.
                    let stageTolerance: Float = (name == "tiny-deep" && s == 2) ? 3e-4 : 1e-4
                    Golden.assertClose(seen["stage\(s)"] ?? [], try Golden.npy("\(name)/stage\(s).npy").values,
                                       tolerance: stageTolerance, "\(name) stage\(s)")
                }
                Golden.assertClose(seen["projector"] ?? [], try Golden.npy("\(name)/projector.npy").values, tolerance: 1e-4, "\(name) projector")
            }
            Golden.assertClose(seen["encoder"] ?? [], try Golden.npy("\(name)/\(goldenName).npy").values, tolerance: 1e-4, "\(name) \(goldenName)")
            for (mode, g) in prompt.generate.sorted(by: { $0.key < $1.key }) {
                var p = GenerationParameters(config: model.file.config.generation, maxNewTokens: g.settings.max_new_tokens)
                p.numBeams = g.settings.num_beams
                p.noRepeatNgramSize = g.settings.no_repeat_ngram_size
                p.minNewTokens = g.settings.min_new_tokens
                XCTAssertEqual(try model.generate(p), g.ids, "\(name) \(task) \(mode)")
            }
            if task == "<CAPTION>" {
                let golden = try Golden.npy("\(name)/decoder_logits_caption.npy")
                let out = try scratch.tensor(Shape(golden.shape))
                try model.teacherForcedLogits(decoderIds: ids.decoder_inputs, into: out)
                Golden.assertClose(out.toArray(), golden.values, tolerance: 1e-4, "\(name) teacher-forced logits")
            }
        }
        // The plan held: neither arena went past what was planned for it.
        XCTAssertLessThanOrEqual(model.file.arena.highWater, model.file.arena.capacity)
        XCTAssertLessThanOrEqual(model.context.scratch.highWater, model.context.scratch.capacity)
    }

    /// The committed int8 tiny-rect file as convert.py writes it by default: the text encoder's
    /// linears and the decoder's self-attention and FFN carry a residual level, the rest are plain int8 (or fp32 where K % 4 != 0); its
    /// teacher-forced logits stay close to transformers' fp32 ones and pick the same token at
    /// every position. A guard against gross errors, not an accuracy figure: on these 3 positions
    /// the NMSE is 1.3e-3 (6.2e-4 for the same file without residual levels: with d_model 8 the
    /// vision tower's int8 error dominates and 3 positions are noise). Over 200 teacher-forced
    /// positions (`ocellus bench accuracy --task '<CAPTION>,<OD>' --tokens 100`) the residual file
    /// halves it, 2.8e-4 -> 1.5e-4; LinearTests check the residual arithmetic.
    func testTinyRectInt8() throws {
        let (model, ids, _) = try load("tiny-rect", precision: "int8")
        for layer in model.encoder.layers {
            for l in [layer.sa.q, layer.sa.k, layer.sa.v, layer.sa.o, layer.fc1, layer.fc2] { XCTAssertNotNil(l.residual) }
        }
        for layer in model.decoder.layers {
            for l in [layer.sa.q, layer.sa.k, layer.sa.v, layer.sa.o, layer.fc1, layer.fc2] { XCTAssertNotNil(l.residual) }
            for l in [layer.ca.q, layer.ca.k, layer.ca.v, layer.ca.o] { XCTAssertNil(l.residual, "cross-attention stays one level") }
        }
        XCTAssertNil(model.embed.residual, "the tied embedding / LM head stays one level")
        let scratch = Arena(capacity: 8 << 20)
        let px = try Golden.npy("tiny-rect/pixel_values.npy")
        let pixels = try scratch.tensor(Shape(px.shape))
        pixels.copy(from: px.values)
        guard let prompt = ids.prompts["<CAPTION>"] else { return XCTFail("no <CAPTION> in ids.json") }
        try model.encode(pixels: pixels, promptIds: prompt.prompt_ids)
        let golden = try Golden.npy("tiny-rect/decoder_logits_caption.npy")
        let out = try scratch.tensor(Shape(golden.shape))
        try model.teacherForcedLogits(decoderIds: ids.decoder_inputs, into: out)
        let y = out.toArray(), v = golden.shape[1]
        var err = 0.0, ref = 0.0
        for i in 0..<y.count { err += Double(y[i] - golden.values[i]) * Double(y[i] - golden.values[i]); ref += Double(golden.values[i]) * Double(golden.values[i]) }
        XCTAssertLessThan(err / ref, 3e-3, "int8 teacher-forced logits NMSE \(err / ref)")
        for p in 0..<golden.shape[0] {
            let row = y[(p * v)..<((p + 1) * v)], g = golden.values[(p * v)..<((p + 1) * v)]
            XCTAssertEqual(row.indices.max { row[$0] < row[$1] }, g.indices.max { g[$0] < g[$1] }, "top-1 at decoder position \(p)")
        }
    }

    func testTinyPadMatchesTransformers() throws { try checkFixture("tiny-pad") }
    func testTinyRectMatchesTransformers() throws { try checkFixture("tiny-rect") }
    func testTinyDeepMatchesTransformers() throws { try checkFixture("tiny-deep") }
}

final class Florence2RuntimeTests: XCTestCase {
    /// After a warm-up, a whole inference (vision, projector, encoder, cross K/V, greedy and beam
    /// decoding) allocates only the arrays it returns.
    func testAnInferenceAllocatesOnlyItsResult() throws {
        for precision in ["fp32", "int8"] { try checkAllocations(precision) }
    }

    private func checkAllocations(_ precision: String) throws {
        let m = try fixtureModel("tiny-rect", precision: precision)
        let arena = Arena(capacity: 1 << 20)
        let px = try Golden.npy("tiny-rect/pixel_values.npy")
        let pixels = try arena.tensor(Shape(px.shape))
        pixels.copy(from: px.values)
        let ids = m.promptIds(try Florence2Task.caption.prompt())
        var p = GenerationParameters(config: m.file.config.generation, maxNewTokens: 16)
        p.minNewTokens = 8
        for beams in [1, 3] {
            p.numBeams = beams
            try m.encode(pixels: pixels, promptIds: ids)
            _ = try m.generate(p)
            omc_start()
            try m.encode(pixels: pixels, promptIds: ids)
            let out = try m.generate(p)
            let n = omc_stop()
            XCTAssertEqual(out.count, 17)
            XCTAssertLessThanOrEqual(n, 1, "\(precision), \(beams) beam(s): \(n) heap allocations in one inference (only the returned ids may allocate)")
        }
    }

    func testPromptsBeyondThePlanAndBadIdsAreClearErrors() throws {
        let m = try fixtureModel("tiny-pad")
        let arena = Arena(capacity: 1 << 20)
        let px = try Golden.npy("tiny-pad/pixel_values.npy")
        let pixels = try arena.tensor(Shape(px.shape))
        pixels.copy(from: px.values)
        let long = [Int32](repeating: 100, count: 33)
        XCTAssertThrowsError(try m.encode(pixels: pixels, promptIds: long)) { e in
            XCTAssertTrue("\(e)".contains("max prompt tokens"), "\(e)")
        }
        XCTAssertThrowsError(try m.encode(pixels: pixels, promptIds: [0, 999_999, 2])) { e in
            XCTAssertTrue("\(e)".contains("999999"), "\(e)")
        }
        let wrong = try arena.tensor(Shape(8, 8, 3))
        XCTAssertThrowsError(try m.encode(pixels: wrong, promptIds: [0, 2])) { e in
            XCTAssertTrue("\(e)".contains("image size"), "\(e)")
        }
        XCTAssertThrowsError(try Florence2Task(token: "<NOT_A_TASK>"))
    }
}
